#include "engine/model/gguf_families.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "engine/base/error.hpp"

namespace vkt::model {

using json = nlohmann::json;

namespace {

// Which layers slide, as llama.cpp's load_swa_pattern decides: a bool array, a period, or the default.
std::vector<bool> sliding_layers(const GgufFile& file, const std::string& arch, uint64_t layers,
                                 uint64_t default_period) {
  const std::string key = arch + ".attention.sliding_window_pattern";
  std::vector<bool> sliding(layers);
  if (const GgufValue* value = file.find(key); value && value->type == GgufValueType::ARRAY) {
    const auto& items = std::get<std::vector<GgufValue>>(value->value);
    if (items.size() != layers)
      throw UserError(file.path().string() + ": " + key + " has " + std::to_string(items.size()) + " entries for " +
                          std::to_string(layers) + " layers",
                      "the file is damaged or not a llama.cpp model file");
    for (size_t layer = 0; layer < layers; layer++) {
      if (items[layer].type != GgufValueType::BOOL)
        throw UserError(file.path().string() + ": " + key + "[" + std::to_string(layer) + "] is not a bool",
                        "the file is damaged or not a llama.cpp model file");
      sliding[layer] = std::get<bool>(items[layer].value);
    }
    return sliding;
  }
  const uint64_t period = file.uint_or_none(key).value_or(default_period);
  for (uint64_t layer = 0; layer < layers; layer++) sliding[layer] = period == 0 || layer % period < period - 1;
  return sliding;
}

void add_gemma(const GgufFile& file, const std::string& arch, json& document) {
  auto key = [&](const char* name) { return arch + "." + name; };
  const bool gemma2 = arch == "gemma2";
  document.erase("hidden_act");
  document["hidden_activation"] = "gelu_pytorch_tanh";
  const uint64_t layers = document["num_hidden_layers"].get<uint64_t>();
  const uint64_t hidden = document["hidden_size"].get<uint64_t>();
  const uint64_t heads = document["num_attention_heads"].get<uint64_t>();
  const uint64_t head_dim = document.contains("head_dim") ? document["head_dim"].get<uint64_t>() : hidden / heads;
  document["head_dim"] = head_dim;
  // llama.cpp's f_attention_scale (after gemma_pytorch's config): hidden / heads for the 27B models.
  const bool large = layers == (gemma2 ? 46u : 62u);
  document["query_pre_attn_scalar"] = large ? hidden / heads : head_dim;

  const std::optional<double> attn_cap = file.float_or_none(key("attn_logit_softcapping"));
  const std::optional<double> final_cap = file.float_or_none(key("final_logit_softcapping"));
  if (gemma2) {
    document["attn_logit_softcapping"] = attn_cap.value_or(50.0);
    document["final_logit_softcapping"] = final_cap.value_or(30.0);
  } else {
    document["attn_logit_softcapping"] = nullptr;  // gemma3.cpp has no attention soft cap
    document["final_logit_softcapping"] = final_cap && *final_cap > 0 ? json(*final_cap) : json(nullptr);
  }

  const uint64_t window = file.uint_or_none(key("attention.sliding_window")).value_or(gemma2 ? 4096 : 0);
  std::vector<bool> sliding(layers, false);
  if (window > 0) sliding = sliding_layers(file, arch, layers, gemma2 ? 2 : 6);
  json types = json::array();
  for (bool slides : sliding) types.push_back(slides ? "sliding_attention" : "full_attention");
  document["layer_types"] = types;
  // Without a window every layer is global; the parser still wants a positive sliding_window.
  document["sliding_window"] = window > 0 ? window : document.value("max_position_embeddings", uint64_t{4096});

  const double base = file.float_or_none(key("rope.freq_base")).value_or(10000.0);
  const std::optional<double> local_base = file.float_or_none(key("rope.freq_base_swa"));
  json scaling = document.contains("rope_scaling") ? document["rope_scaling"] : json(nullptr);
  document.erase("rope_scaling");
  if (gemma2) {
    if (local_base && *local_base != base)
      throw UserError(file.path().string() + ": " + key("rope.freq_base_swa") + " differs from " +
                          key("rope.freq_base") + "; Gemma 2 has one RoPE base",
                      "vktune loads Gemma 2 GGUF files with a single RoPE base");
    if (!scaling.is_null())
      throw UserError(file.path().string() + ": " + key("rope.scaling.type") + " is set for a Gemma 2 model",
                      "vktune loads Gemma 2 GGUF files without RoPE scaling");
    document["rope_theta"] = base;
    return;
  }
  document.erase("rope_theta");
  json global = {{"rope_type", "default"}, {"rope_theta", base}};
  if (!scaling.is_null()) {
    global.update(scaling);  // {"rope_type": linear..., "factor": ...}; the parser names unsupported types
    global["rope_theta"] = base;
  }
  document["rope_parameters"] = {
      {"full_attention", global},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", local_base.value_or(10000.0)}}}};
}

void add_phi3(const GgufFile& file, json& document) {
  const std::string where = file.path().string();
  if (auto window = file.uint_or_none("phi3.attention.sliding_window"))
    document["sliding_window"] = *window > 0 ? json(*window) : json(nullptr);  // 0: none (Phi-4's mark)
  else
    document["sliding_window"] = nullptr;
  const std::optional<uint64_t> original = file.uint_or_none("phi3.rope.scaling.original_context_length");
  if (original) document["original_max_position_embeddings"] = *original;
  const GgufTensor* long_factors = file.find_tensor("rope_factors_long.weight");
  const GgufTensor* short_factors = file.find_tensor("rope_factors_short.weight");
  if (!long_factors && !short_factors) return;
  if (!long_factors || !short_factors || !original)
    throw UserError(where +
                        ": a Phi-3 longrope model needs rope_factors_long, rope_factors_short and "
                        "phi3.rope.scaling.original_context_length; one is missing",
                    "the file is damaged or not a llama.cpp model file");
  json rope = {{"rope_type", "longrope"},
               {"rope_theta", document["rope_theta"]},
               {"original_max_position_embeddings", *original},
               {"long_factor", file.to_fp32(*long_factors)},
               {"short_factor", file.to_fp32(*short_factors)}};
  // The converter writes sqrt(1 + ln(s) / ln(original)) (s = context / original), the value the
  // parser derives itself; another value (Phi-3's yarn variant) is passed on as attention_factor.
  if (auto stored = file.float_or_none("phi3.rope.scaling.attn_factor")) {
    const double scale = document["max_position_embeddings"].get<double>() / static_cast<double>(*original);
    const double derived =
        scale <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(*original)));
    if (std::abs(*stored - derived) > 1e-6 * derived) rope["attention_factor"] = *stored;
  }
  document.erase("rope_scaling");
  document["rope_scaling"] = rope;
}

}  // namespace

bool gguf_stores_norm_plus_one(std::string_view architecture) {
  return architecture == "gemma2" || architecture == "gemma3";
}

void add_gguf_family_config(const GgufFile& file, std::string_view architecture, json& document) {
  if (gguf_stores_norm_plus_one(architecture)) add_gemma(file, std::string(architecture), document);
  if (architecture == "phi3") add_phi3(file, document);
}

}  // namespace vkt::model
