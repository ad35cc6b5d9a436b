#pragma once
// A training run of PEFT's prefix tuning (--peft-type prefix_tuning, engine/model/prefix_tuning.hpp):
// its flags checked, its adapter settings and PEFT's initialisation of the prefix.
#include <cstdint>

#include "engine/model/session.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

// UserError for flags that do not fit: --prefix-projection without prefix tuning, a count out of range, --packing (PEFT's prefix is one past
// cache per row, seen by every token of it: packed examples would see it only in the first segment's
// numbering), preference objectives.
void validate_prefix_tuning(const TrainConfig& config);
// The prefix rows per layer (--num-virtual-tokens; 0 unless --peft-type prefix_tuning).
uint32_t prefix_tokens(const TrainConfig& config);
// --prefix-projection: the prefix encoder's hidden size (--encoder-hidden-size, 0: the key/value width
// kv_heads * head_dim, PEFT's default token_dim); 0 without the flag.
uint64_t prefix_projection_hidden(const TrainConfig& config, const spec::ModelShape* model);
// --num-virtual-tokens into `lora`; with a projection (`projection_hidden` > 0) the encoder trains.
void set_prefix_tuning(const TrainConfig& config, model::LoraSettings& lora, uint64_t projection_hidden = 0);
// A fresh prefix: N(0, 1) from --seed, as PEFT's torch.nn.Embedding(num_virtual_tokens, layers*2*kv_dim);
// with the projection, PEFT's PrefixEncoder init (model::init_prefix_encoder) and its output.
void init_prefix_tuning(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                        uint64_t seed);

}  // namespace vkt::train
