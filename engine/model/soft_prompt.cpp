#include "engine/model/soft_prompt.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/kernels/random.hpp"
#include "engine/model/p_tuning.hpp"

namespace vkt::model {

bool is_soft_prompt(spec::PeftType type) {
  return type == spec::PeftType::prompt_tuning || type == spec::PeftType::prefix_tuning ||
         type == spec::PeftType::p_tuning;
}

nlohmann::json peft_prompt_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                         const std::string& base_model) {
  const bool text = settings.prompt_init == "TEXT";
  return {{"auto_mapping", nullptr},
          {"base_model_name_or_path", base_model},
          {"inference_mode", true},
          {"modules_to_save", nullptr},
          {"num_attention_heads", shape.heads},
          {"num_layers", shape.layers},
          {"num_transformer_submodules", 1},
          {"num_virtual_tokens", settings.virtual_tokens},
          {"peft_type", "PROMPT_TUNING"},
          {"prompt_tuning_init", settings.prompt_init},
          {"prompt_tuning_init_text", text ? nlohmann::json(settings.prompt_init_text) : nlohmann::json()},
          {"revision", nullptr},
          {"task_type", "CAUSAL_LM"},
          {"token_dim", shape.hidden},
          {"tokenizer_kwargs", nullptr},
          {"tokenizer_name_or_path", text ? nlohmann::json(settings.prompt_tokenizer) : nlohmann::json()}};
}

uint32_t read_virtual_token_count(const nlohmann::json& config, const std::string& path, uint64_t max_tokens,
                                  const std::string& peft_types, const std::string& what) {
  auto where = [&](const std::string& key) { return path + ": \"" + key + "\""; };
  const auto& count = config.contains("num_virtual_tokens") ? config["num_virtual_tokens"] : nlohmann::json();
  if (!count.is_number_unsigned() || count.get<uint64_t>() == 0 || count.get<uint64_t>() > max_tokens)
    throw UserError(
        where("num_virtual_tokens") + " is " + count.dump() + ", not a count of virtual tokens",
        "a " + peft_types + " adapter_config.json has num_virtual_tokens from 1 to " + std::to_string(max_tokens));
  if (config.value("num_transformer_submodules", 1) != 1)
    throw UserError(where("num_transformer_submodules") + " is not 1 (an encoder-decoder " + what + ")",
                    "vktune trains decoder-only (CAUSAL_LM) models");
  if (config.contains("task_type") && config["task_type"].is_string() && config["task_type"] != "CAUSAL_LM")
    throw UserError(where("task_type") + " is " + config["task_type"].dump() + ", vktune reads CAUSAL_LM adapters",
                    "train the " + what + " for a causal language model");
  return count.get<uint32_t>();
}

void read_prompt_tuning_config(const nlohmann::json& config, const std::string& path, LoraSettings& settings) {
  settings.peft_type = spec::PeftType::prompt_tuning;
  settings.targets.clear();
  settings.virtual_tokens = read_virtual_token_count(config, path, 65536, "PROMPT_TUNING or P_TUNING", "prompt");
  if (config.contains("prompt_tuning_init") && config["prompt_tuning_init"].is_string())
    settings.prompt_init = config["prompt_tuning_init"].get<std::string>();
  if (config.contains("prompt_tuning_init_text") && config["prompt_tuning_init_text"].is_string())
    settings.prompt_init_text = config["prompt_tuning_init_text"].get<std::string>();
  if (config.contains("tokenizer_name_or_path") && config["tokenizer_name_or_path"].is_string())
    settings.prompt_tokenizer = config["tokenizer_name_or_path"].get<std::string>();
  if (config.value("peft_type", std::string()) == "P_TUNING") read_p_tuning_fields(config, path, settings);
}

std::vector<uint32_t> prompt_init_ids(const std::vector<uint32_t>& text_ids, uint32_t count) {
  if (text_ids.empty())
    throw UserError("--prompt-tuning-init-text gives no tokens",
                    "give a non-empty text, or --prompt-tuning-init random");
  std::vector<uint32_t> ids;  // PEFT: trimmed, or repeated ceil(count / n) times, then trimmed
  while (ids.size() < count) ids.insert(ids.end(), text_ids.begin(), text_ids.end());
  ids.resize(count);
  return ids;
}

std::vector<float> prompt_random_init(uint32_t count, uint32_t hidden, uint64_t seed) {
  // Box-Muller over two uniform streams (a different generator than torch's: the same law).
  const uint64_t n = static_cast<uint64_t>(count) * hidden;
  std::vector<float> u1(n), u2(n), values(n);
  ref::random_uniform(u1.data(), n, static_cast<uint32_t>(seed), random::stream_init, 1, 0xfffffffeu, 0.0f, 1.0f);
  ref::random_uniform(u2.data(), n, static_cast<uint32_t>(seed), random::stream_init, 2, 0xfffffffeu, 0.0f, 1.0f);
  for (uint64_t i = 0; i < n; i++) {
    const double radius = std::sqrt(-2.0 * std::log(1.0 - static_cast<double>(u1[i])));  // u1 < 1: log(> 0)
    values[i] = static_cast<float>(radius * std::cos(2.0 * M_PI * static_cast<double>(u2[i])));
  }
  return values;
}

}  // namespace vkt::model
