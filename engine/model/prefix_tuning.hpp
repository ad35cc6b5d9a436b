#pragma once
// PEFT's prefix tuning (PrefixTuningConfig, peft 0.21; --peft-type prefix_tuning). Every layer's
// attention sees num_virtual_tokens trained key/value rows before each sequence's own: PEFT's
// get_prompt views the (P, layers*2*kv_dim) prompt embedding as (P, 2*layers, kv_heads, head_dim)
// (kv_heads with grouped-query attention: _prepare_prompt_learning_config sets token_dim to
// head_dim*num_key_value_heads) and hands layer l keys 2l and values 2l+1 as a past cache. The
// prefix keys enter attention as stored (no RoPE), and transformers numbers the sequence's tokens
// P .. P+T-1 after them (tests/reference/soft_prompt_golden.py checks both). In the plan: the
// trained "prefix.key_values" (P, layers*2*kv_dim), saved as "prompt_embeddings". With
// prefix_projection (--prefix-projection) PEFT's PrefixEncoder makes the prefix while training:
//   prefix = L2(tanh(L0(E)))   E (P, T) ~ N(0, 1), T = kv_dim (token_dim); L0: T -> H; L2: H -> layers*2*T
// (H: encoder_hidden_size, T by default; torch.nn.Linear's init). vktune runs it on the device before
// each forward (and after each update), and the prefix's gradient flows back through it into its
// parameters (engine/plan/prefix_encoder_plan.hpp names them). PEFT's save_pretrained writes only its
// output, as "prompt_embeddings" (the saved config says inference_mode, so PEFT loads it as a plain
// prefix): such an adapter is, for inference, a plain prefix-tuning one. Checkpoints keep the encoder
// (prompt_encoder.safetensors, as P-tuning's) so a resume continues it. The prefix cannot be merged
// into weights.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/model/adapter.hpp"

#include "engine/model/transformer.hpp"

namespace vkt::model {

// PEFT's adapter_config.json of a prefix-tuning adapter (PrefixTuningConfig's keys as save_pretrained
// writes them; token_dim and num_attention_heads as PEFT rewrites them for grouped-query attention).
nlohmann::json peft_prefix_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                         const std::string& base_model);
// A "PREFIX_TUNING" adapter_config.json into `settings`; UserError naming `path` and the field
// (a token_dim or num_layers that does not fit the model is checked when the weights load).
void read_prefix_tuning_config(const nlohmann::json& config, const std::string& path, LoraSettings& settings);
// The prefix encoder's parameters (prefix_projection while training: train_encoder), their buffer names
// and PEFT's named_parameters names (adapter "default"); empty otherwise.
std::vector<AdapterExtraTensor> prefix_encoder_tensors(const spec::ModelShape& shape, const LoraSettings& settings);
// PEFT's initialisation, keyed by `seed`: the embedding N(0, 1) (prompt_random_init), each Linear's
// weight and bias U(-1/sqrt(in), 1/sqrt(in)) (init_encoder_mlp). Nothing without an encoder.
void init_prefix_encoder(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape,
                         const LoraSettings& settings, uint64_t seed);
// prefix.key_values (P, layers*2*T) = the encoder's output; keeps the tanh output for the backward.
void record_prefix_encoder_forward(Recorder& recorder, const BufferSet& buffers, const spec::ModelShape& shape,
                                   const LoraSettings& settings);
// Columns of the prefix: layers * 2 * kv_heads * head_dim.
uint64_t prefix_width(const spec::ModelShape& shape);

}  // namespace vkt::model
