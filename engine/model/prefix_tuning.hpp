#pragma once
// PEFT's prefix tuning (PrefixTuningConfig, peft 0.21; --peft-type prefix_tuning). Every layer's
// attention sees num_virtual_tokens trained key/value rows before each sequence's own: PEFT's
// get_prompt views the (P, layers*2*kv_dim) prompt embedding as (P, 2*layers, kv_heads, head_dim)
// (kv_heads with grouped-query attention: _prepare_prompt_learning_config sets token_dim to
// head_dim*num_key_value_heads) and hands layer l keys 2l and values 2l+1 as a past cache. The
// prefix keys enter attention as stored (no RoPE), and transformers numbers the sequence's tokens
// P .. P+T-1 after them (tests/reference/soft_prompt_golden.py checks both). In the plan: the
// trained "prefix.key_values" (P, layers*2*kv_dim), saved as "prompt_embeddings"; with
// prefix_projection PEFT saves the projected prefix, which is the same tensor, so vktune loads such
// adapters too (it trains without the projection). The prefix cannot be merged into weights.
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "engine/model/transformer.hpp"

namespace vkt::model {

// PEFT's adapter_config.json of a prefix-tuning adapter (PrefixTuningConfig's keys as save_pretrained
// writes them; token_dim and num_attention_heads as PEFT rewrites them for grouped-query attention).
nlohmann::json peft_prefix_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                         const std::string& base_model);
// A "PREFIX_TUNING" adapter_config.json into `settings`; UserError naming `path` and the field
// (a token_dim or num_layers that does not fit the model is checked when the weights load).
void read_prefix_tuning_config(const nlohmann::json& config, const std::string& path, LoraSettings& settings);
// Columns of the prefix: layers * 2 * kv_heads * head_dim.
uint64_t prefix_width(const spec::ModelShape& shape);

}  // namespace vkt::model
