#pragma once
// PEFT's soft prompts (prompt learning, peft 0.21). Prompt tuning (PromptTuningConfig /
// PromptEmbedding): N virtual token embeddings, prepended to every sequence's inputs_embeds (the
// attention mask extended with ones, the labels with -100), so that transformers numbers the
// positions 0 .. N+T-1; only the embeddings train. Saved as "prompt_embeddings" (N, hidden) in
// adapter_model.safetensors. vktune keeps them as the first N cells of every row (RunSettings::
// virtual_tokens, counted in seq_len): the batcher leaves those cells to the prompt and the
// transformer writes the prompt's rows there. A prompt cannot be merged into weights.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/model/transformer.hpp"

namespace vkt::model {

bool is_soft_prompt(spec::PeftType type);  // prompt_tuning, prefix_tuning, p_tuning
// PEFT's adapter_config.json of a prompt-tuning adapter (PromptTuningConfig's keys as PEFT writes them).
nlohmann::json peft_prompt_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                         const std::string& base_model);
// A "PROMPT_TUNING" (or "P_TUNING", with its encoder fields) adapter_config.json into `settings`;
// UserError naming `path` and the field.
void read_prompt_tuning_config(const nlohmann::json& config, const std::string& path, LoraSettings& settings);
// The fields every prompt-learning adapter_config.json shares (num_virtual_tokens in 1..max_tokens,
// num_transformer_submodules 1, task_type CAUSAL_LM), checked with errors naming `path`; returns the count.
// `what` names the trained input in the hints ("prompt", "prefix").
uint32_t read_virtual_token_count(const nlohmann::json& config, const std::string& path, uint64_t max_tokens,
                                  const std::string& peft_types, const std::string& what);
// PEFT's TEXT init: the init text's token ids repeated and cut to `count` (UserError when empty).
std::vector<uint32_t> prompt_init_ids(const std::vector<uint32_t>& text_ids, uint32_t count);
// PEFT's RANDOM init (torch.nn.Embedding's): (count, hidden) values from N(0, 1), keyed by `seed`.
std::vector<float> prompt_random_init(uint32_t count, uint32_t hidden, uint64_t seed);

}  // namespace vkt::model
