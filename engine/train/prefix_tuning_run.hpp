#pragma once
// A training run of PEFT's prefix tuning (--peft-type prefix_tuning, engine/model/prefix_tuning.hpp):
// its flags checked, its adapter settings and PEFT's initialisation of the prefix.
#include <cstdint>

#include "engine/model/session.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

// UserError for flags that do not fit: a count out of range, --packing (PEFT's prefix is one past
// cache per row, seen by every token of it: packed examples would see it only in the first segment's
// numbering), preference objectives.
void validate_prefix_tuning(const TrainConfig& config);
// The prefix rows per layer (--num-virtual-tokens; 0 unless --peft-type prefix_tuning).
uint32_t prefix_tokens(const TrainConfig& config);
// --num-virtual-tokens into `lora` (prefix_projection stays false: vktune trains the prefix itself).
void set_prefix_tuning(const TrainConfig& config, model::LoraSettings& lora);
// A fresh prefix: N(0, 1) from --seed, as PEFT's torch.nn.Embedding(num_virtual_tokens, layers*2*kv_dim).
void init_prefix_tuning(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                        uint64_t seed);

}  // namespace vkt::train
