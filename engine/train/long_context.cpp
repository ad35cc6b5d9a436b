#include "engine/train/long_context.hpp"

#include <cmath>

#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/kernels/s2_attention.hpp"

namespace vkt::train {

model::ModelConfig with_rope_scaling(const model::ModelConfig& config, const TrainConfig& flags) {
  if (flags.rope_scaling.empty()) return config;
  const std::string& type = flags.rope_scaling;
  if (type != "linear" && type != "dynamic" && type != "yarn" && type != "llama3")
    throw UserError("--rope-scaling " + type + " is unknown", "use linear, dynamic, yarn or llama3");
  if (!(flags.rope_scaling_factor > 1))
    throw UserError("--rope-scaling " + type + " needs --rope-scaling-factor above 1 (got " +
                        std::to_string(flags.rope_scaling_factor) + ")",
                    "e.g. --rope-scaling-factor 4 to go from 256 to 1024 positions");
  if (config.gemma || config.rope_scaling.type == "longrope" || !config.rope_frequency_factors.empty())
    throw UserError("--rope-scaling: this model's RoPE (" +
                        std::string(config.gemma ? "Gemma's per-layer settings" : "longrope or GGUF rope_freqs") +
                        ") cannot be rescaled by vktune",
                    "use a Llama/Qwen/Mistral model, or drop --rope-scaling");
  if (config.rope_scaling.type != "default")
    throw UserError("--rope-scaling: the model already has rope_scaling \"" + config.rope_scaling.type + "\"",
                    "start from a model without rope scaling (or drop --rope-scaling to keep the model's)");
  const int64_t original = flags.original_max_position_embeddings > 0 ? flags.original_max_position_embeddings
                                                                      : config.max_position_embeddings;
  nlohmann::json rope = {{"rope_type", type}, {"factor", flags.rope_scaling_factor}, {"rope_theta", config.rope_theta}};
  if (type == "llama3") {
    rope["low_freq_factor"] = flags.low_freq_factor;
    rope["high_freq_factor"] = flags.high_freq_factor;
    rope["original_max_position_embeddings"] = original;
  } else if (type == "yarn") {
    rope["beta_fast"] = flags.beta_fast;
    rope["beta_slow"] = flags.beta_slow;
    rope["original_max_position_embeddings"] = original;
    if (flags.attention_factor > 0) rope["attention_factor"] = flags.attention_factor;
  }
  nlohmann::json document = model::to_json(config);
  document.erase("rope_scaling");
  document.erase("rope_theta");
  document["rope_parameters"] = rope;
  if (type != "dynamic")
    document["max_position_embeddings"] =
        static_cast<int64_t>(std::llround(static_cast<double>(original) * flags.rope_scaling_factor));
  model::ModelConfig scaled = model::parse_model_config(document, "--rope-scaling");
  return scaled;
}

uint32_t s2_sequence_length(const TrainConfig& flags, uint32_t seq_len) {
  if (!flags.s2_attn || seq_len % 8 == 0) return seq_len;
  const uint32_t rounded = (seq_len + 7) / 8 * 8;
  log::info("--s2-attn: rows padded from " + std::to_string(seq_len) + " to " + std::to_string(rounded) +
            " tokens (a multiple of 8: four groups of an even size)");
  return rounded;
}

uint32_t s2_group_size(const TrainConfig& flags, const model::ModelConfig& config, uint32_t seq_len) {
  if (!flags.s2_attn) return 0;
  if (flags.peft_type == spec::PeftType::prompt_tuning || flags.peft_type == spec::PeftType::prefix_tuning ||
      flags.peft_type == spec::PeftType::p_tuning)
    throw UserError("--s2-attn with --peft-type " + std::string(spec::peft_type_name(flags.peft_type)) +
                        ": virtual tokens would sit in the first group only",
                    "train LoRA (LongLoRA's setting) or full, or drop --s2-attn");
  kernels::AttentionShape shape;
  shape.seq_q = shape.seq_kv = seq_len;
  shape.q_heads = static_cast<uint32_t>(config.num_attention_heads);
  shape.kv_heads = static_cast<uint32_t>(config.num_key_value_heads);
  shape.head_dim = static_cast<uint32_t>(config.head_dim);
  shape.softcap = static_cast<float>(config.attn_logit_softcapping);
  if (config.sliding_window) shape.window = static_cast<uint32_t>(*config.sliding_window);
  const uint32_t group = seq_len / 4;
  const std::string why = kernels::s2_attention_unsupported(shape, group);
  if (!why.empty())
    throw UserError("--s2-attn: " + why + " (model " + flags.model + ")",
                    "train with full attention (drop --s2-attn) for this model or length");
  log::info("--s2-attn: training attends within groups of " + std::to_string(group) + " of " + std::to_string(seq_len) +
            " tokens, half of the heads shifted by " + std::to_string(group / 2));
  return group;
}

void upload_prune_masks(vk::Context& context, model::ModelSession& session) {
  std::vector<float> values;
  for (const auto& spec : session.plan.buffers) {
    if (!spec.name.starts_with("prune_mask.")) continue;
    values.resize(spec.bytes / 4);
    context.download(session.buffers->buffer(spec.name.substr(11)), values.data(), 0, spec.bytes);
    for (float& value : values) value = value != 0.0f ? 1.0f : 0.0f;
    context.upload(session.buffers->buffer(spec.name), values.data(), 0, spec.bytes);
  }
}

}  // namespace vkt::train
