#include "engine/model/config.hpp"

#include <cmath>
#include <numbers>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/gguf_model.hpp"

namespace vkt::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct ArchitectureInfo {
  Architecture architecture;
  const char* class_name;
  const char* model_type;
};
constexpr ArchitectureInfo kArchitectures[] = {
    {Architecture::llama, "LlamaForCausalLM", "llama"},
    {Architecture::qwen2, "Qwen2ForCausalLM", "qwen2"},
    {Architecture::mistral, "MistralForCausalLM", "mistral"},
    {Architecture::qwen3, "Qwen3ForCausalLM", "qwen3"},
    {Architecture::gemma2, "Gemma2ForCausalLM", "gemma2"},
    {Architecture::gemma3, "Gemma3ForCausalLM", "gemma3_text"},
    {Architecture::phi3, "Phi3ForCausalLM", "phi3"},
};

const ArchitectureInfo& info(Architecture architecture) {
  for (const auto& entry : kArchitectures)
    if (entry.architecture == architecture) return entry;
  VKT_ASSERT(false, "unknown Architecture");
  return kArchitectures[0];
}

const char* kConfigHint = "fix config.json, or download the model's config.json again";

// Upper bounds on config.json sizes: several times the largest released models' (Llama 3.1 405B:
// 126 layers, hidden 16384, intermediate 53248; Gemma: vocab 262144; Llama 4: 10M positions).
// They keep every size product (hidden x vocab, layers x ...) far inside 64 bits.
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHidden = 1 << 16;
constexpr int64_t kMaxIntermediate = 1 << 18;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxPositions = 1 << 26;

// Field readers: each names the file and the key in its error.
class Reader {
 public:
  Reader(const json& document, std::string where) : document_(document), where_(std::move(where)) {}

  bool has(const char* key) const { return document_.contains(key) && !document_[key].is_null(); }

  [[noreturn]] void fail(const std::string& key, const std::string& problem,
                         const std::string& hint = kConfigHint) const {
    throw UserError(where_ + ": \"" + key + "\" " + problem, hint);
  }

  int64_t integer(const json& value, const std::string& key) const {
    // Beyond int64_t the conversions below would wrap (unsigned) or be undefined (double).
    constexpr double kInt64Limit = 9223372036854775808.0;  // 2^63
    if ((value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(INT64_MAX)) ||
        (value.is_number_float() && std::fabs(value.get<double>()) >= kInt64Limit))
      fail(key, "is out of range, got " + value.dump() + " (far beyond any real model's)");
    if (value.is_number_integer()) return value.get<int64_t>();
    // Some writers store integers as 4096.0; accept those that are whole numbers (and in range:
    // casting 1e30 to int64 is undefined).
    const double number = value.is_number_float() ? value.get<double>() : 0.5;
    if (std::floor(number) == number && std::fabs(number) < 9.0e18) return static_cast<int64_t>(number);
    fail(key, "must be an integer, got " + value.dump());
  }

  // A positive integer no larger than `limit`: sizes beyond every real model's are a corrupt or
  // hostile file, and would make the planner and the loaders run without end.
  int64_t bounded(const char* key, int64_t limit) const { return check_limit(key, positive(key), limit); }
  int64_t bounded_or(const char* key, int64_t fallback, int64_t limit) const {
    return check_limit(key, positive_or(key, fallback), limit);
  }
  int64_t check_limit(const std::string& key, int64_t value, int64_t limit) const {
    if (value > limit)
      fail(key, "is " + std::to_string(value) + ", above vktune's limit of " + std::to_string(limit),
           "real models stay far below it: the config.json is probably corrupted");
    return value;
  }

  int64_t positive(const char* key) const {
    if (!has(key)) fail(key, "is missing", "every " + std::string("config.json of a supported model sets it"));
    int64_t value = integer(document_[key], key);
    if (value <= 0) fail(key, "must be positive, got " + std::to_string(value));
    return value;
  }
  int64_t positive_or(const char* key, int64_t fallback) const { return has(key) ? positive(key) : fallback; }

  double number(const json& value, const std::string& key) const {
    if (!value.is_number()) fail(key, "must be a number, got " + value.dump());
    if (!std::isfinite(value.get<double>())) fail(key, "must be finite, got " + value.dump());
    return value.get<double>();
  }
  double number_or(const char* key, double fallback) const { return has(key) ? number(document_[key], key) : fallback; }

  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!document_[key].is_boolean()) fail(key, "must be true or false, got " + document_[key].dump());
    return document_[key].get<bool>();
  }

  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!document_[key].is_string()) fail(key, "must be a string, got " + document_[key].dump());
    return document_[key].get<std::string>();
  }

  std::optional<int64_t> optional_integer(const char* key) const {
    if (!has(key)) return std::nullopt;
    return integer(document_[key], key);
  }

  const json& operator[](const char* key) const { return document_[key]; }
  const std::string& where() const { return where_; }

 private:
  const json& document_;
  std::string where_;
};

Architecture parse_architecture(const json& document, const Reader& reader) {
  if (reader.has("architectures")) {
    const json& list = document["architectures"];
    if (!list.is_array() || list.empty() || !list[0].is_string())
      reader.fail("architectures", "must be a list of class names, got " + list.dump());
    std::string name = list[0].get<std::string>();
    for (const auto& entry : kArchitectures)
      if (name == entry.class_name) return entry.architecture;
    throw UserError(reader.where() + ": architecture " + name + " is not supported",
                    "vktune supports " + supported_architectures());
  }
  if (reader.has("model_type")) {
    std::string type = reader.string_or("model_type", "");
    for (const auto& entry : kArchitectures)
      if (type == entry.model_type) return entry.architecture;
    throw UserError(reader.where() + ": model_type " + type + " is not supported",
                    "vktune supports " + supported_architectures());
  }
  throw UserError(reader.where() + ": neither \"architectures\" nor \"model_type\" is set",
                  "is this a Hugging Face config.json? vktune supports " + supported_architectures());
}

// rope_scaling (4.x) or rope_parameters (5.x): {"rope_type" | "type": ..., "factor": ..., ...}.
// Phi-3 (phi3_original_context > 0: config.json's top-level original_max_position_embeddings, which
// transformers puts in place of the one inside the RoPE settings) reads "su" and "yarn" as longrope.
RopeScaling parse_rope_scaling(const json& scaling, const std::string& key, const Reader& reader,
                               int64_t max_position_embeddings, int64_t phi3_original_context = 0) {
  RopeScaling result;
  if (scaling.is_null()) return result;
  if (!scaling.is_object()) reader.fail(key, "must be an object or null, got " + scaling.dump());
  if (scaling.contains("rope_type") && scaling["rope_type"].is_string())
    result.type = scaling["rope_type"].get<std::string>();
  else if (scaling.contains("type") && scaling["type"].is_string())
    result.type = scaling["type"].get<std::string>();
  if (scaling.contains("partial_rotary_factor") && !scaling["partial_rotary_factor"].is_null() &&
      reader.number(scaling["partial_rotary_factor"], key + ".partial_rotary_factor") != 1.0)
    reader.fail(key + ".partial_rotary_factor", "is not 1: partial rotary embeddings are not supported",
                "vktune rotates the whole head (Phi-4-mini's 0.75 is not supported yet)");
  if (phi3_original_context > 0 && (result.type == "su" || result.type == "yarn")) result.type = "longrope";
  if (phi3_original_context > 0 && result.type != "default" && result.type != "longrope")
    reader.fail(key, "has rope type \"" + result.type + "\"; Phi-3 uses default or longrope");
  auto field = [&](const char* name) -> const json& {
    if (!scaling.contains(name) || scaling[name].is_null())
      reader.fail(key + "." + name, "is missing (rope type \"" + result.type + "\" needs it)");
    return scaling[name];
  };
  // original_max_position_embeddings, or `fallback` when absent (transformers 5 fills it from
  // max_position_embeddings: standardize_rope_params); positive and within the limit.
  auto original_context = [&](int64_t fallback) {
    const char* name = "original_max_position_embeddings";
    int64_t value =
        scaling.contains(name) && !scaling[name].is_null() ? reader.integer(scaling[name], key + "." + name) : fallback;
    if (value <= 0) reader.fail(key + "." + name, "must be positive");
    reader.check_limit(key + "." + name, value, kMaxPositions);
    return value;
  };
  if (result.type == "default") return result;
  if (result.type == "linear") {
    result.factor = reader.number(field("factor"), key + ".factor");
  } else if (result.type == "llama3") {
    result.factor = reader.number(field("factor"), key + ".factor");
    result.low_freq_factor = reader.number(field("low_freq_factor"), key + ".low_freq_factor");
    result.high_freq_factor = reader.number(field("high_freq_factor"), key + ".high_freq_factor");
    result.original_max_position_embeddings = original_context(max_position_embeddings);
    if (result.high_freq_factor <= result.low_freq_factor)
      reader.fail(key + ".high_freq_factor", "must be larger than low_freq_factor");
    if (!(result.low_freq_factor > 0)) reader.fail(key + ".low_freq_factor", "must be positive");
  } else if (result.type == "dynamic") {
    result.factor = reader.number(field("factor"), key + ".factor");
  } else if (result.type == "yarn") {
    auto optional = [&](const char* name) -> std::optional<double> {
      if (!scaling.contains(name) || scaling[name].is_null()) return std::nullopt;
      return reader.number(scaling[name], key + "." + name);
    };
    // factor defaults to the ratio of the two contexts (_compute_yarn_parameters).
    result.original_max_position_embeddings = original_context(max_position_embeddings);
    result.factor = optional("factor").value_or(static_cast<double>(max_position_embeddings) /
                                                static_cast<double>(result.original_max_position_embeddings));
    // `get("beta_fast") or 32`: a 0 means the default too.
    result.beta_fast = optional("beta_fast").value_or(0) != 0 ? *optional("beta_fast") : 32.0;
    result.beta_slow = optional("beta_slow").value_or(0) != 0 ? *optional("beta_slow") : 1.0;
    if (!(result.beta_fast > 0) || !(result.beta_slow > 0))
      reader.fail(key + ".beta_fast", "beta_fast and beta_slow must be positive");
    if (scaling.contains("truncate") && !scaling["truncate"].is_null()) {
      if (!scaling["truncate"].is_boolean()) reader.fail(key + ".truncate", "must be true or false");
      result.truncate = scaling["truncate"].get<bool>();
    }
    result.mscale = optional("mscale");
    result.mscale_all_dim = optional("mscale_all_dim");
    const std::optional<double> attention = optional("attention_factor");
    result.attention_factor_given = attention.has_value();
    result.attention_factor = attention ? *attention : yarn_attention_factor(result);
    if (!(result.attention_factor > 0)) reader.fail(key + ".attention_factor", "must be positive");
  } else if (result.type == "longrope") {
    result.original_max_position_embeddings =
        phi3_original_context > 0 ? phi3_original_context : original_context(max_position_embeddings);
    auto factors = [&](const char* name) {
      const json& list = field(name);
      if (!list.is_array() || list.empty())
        reader.fail(key + "." + name, "must be a list of numbers, one per rotary pair");
      std::vector<float> values;
      for (const auto& value : list) values.push_back(static_cast<float>(reader.number(value, key + "." + name)));
      return values;
    };
    result.short_factor = factors("short_factor");
    result.long_factor = factors("long_factor");
    // transformers' _compute_longrope_parameters: factor defaults to max / original positions, the
    // attention factor to sqrt(1 + ln(factor) / ln(original)) (1 when factor <= 1).
    result.factor = scaling.contains("factor") && !scaling["factor"].is_null()
                        ? reader.number(scaling["factor"], key + ".factor")
                        : static_cast<double>(max_position_embeddings) /
                              static_cast<double>(result.original_max_position_embeddings);
    if (scaling.contains("attention_factor") && !scaling["attention_factor"].is_null())
      result.attention_factor = reader.number(scaling["attention_factor"], key + ".attention_factor");
    else
      result.attention_factor =
          result.factor <= 1.0
              ? 1.0
              : std::sqrt(1.0 + std::log(result.factor) /
                                    std::log(static_cast<double>(result.original_max_position_embeddings)));
  } else {
    reader.fail(key, "has rope type \"" + result.type + "\", which vktune does not support",
                "supported rope types: default, linear, dynamic, yarn, llama3, longrope (Phi-3)");
  }
  if (!(result.factor > 0)) reader.fail(key + ".factor", "must be positive");
  return result;
}

std::vector<int64_t> parse_eos(const json& value, const Reader& reader) {
  std::vector<int64_t> ids;
  if (value.is_null()) return ids;
  if (value.is_array()) {
    for (const auto& item : value) ids.push_back(reader.integer(item, "eos_token_id"));
  } else {
    ids.push_back(reader.integer(value, "eos_token_id"));
  }
  return ids;
}

}  // namespace

const char* architecture_name(Architecture architecture) { return info(architecture).class_name; }
const char* model_type_name(Architecture architecture) { return info(architecture).model_type; }

std::string supported_architectures() {
  std::string text;
  for (const auto& entry : kArchitectures) text += (text.empty() ? "" : ", ") + std::string(entry.class_name);
  return text + " (and models built on them: TinyLlama, SmolLM, Llama 2/3, Qwen2/2.5, Qwen3, Mistral, Phi-3)";
}

// Gemma's RoPE (Gemma 3: a global base, optionally scaled, and a local one for sliding layers, as
// rope_parameters per layer type or rope_theta + rope_local_base_freq; Gemma 2: one base),
// attention scale and soft caps (Gemma2Config's defaults 50 and 30 when absent).
void parse_gemma(const json& document, const Reader& reader, ModelConfig& config) {
  if (reader.boolean_or("use_bidirectional_attention", false))
    reader.fail("use_bidirectional_attention", "is true: vktune trains causal decoders only");
  config.query_pre_attn_scalar = reader.number_or("query_pre_attn_scalar", 256.0);
  if (!(config.query_pre_attn_scalar > 0)) reader.fail("query_pre_attn_scalar", "must be positive");
  const bool gemma2 = config.architecture == Architecture::gemma2;
  auto cap = [&](const char* key, double gemma2_default) {
    if (!document.contains(key)) return gemma2 ? gemma2_default : 0.0;
    double value = reader.has(key) ? reader.number_or(key, 0) : 0;  // null: none
    if (value < 0) reader.fail(key, "must be positive or null");
    return value;
  };
  config.attn_logit_softcapping = cap("attn_logit_softcapping", 50.0);
  config.final_logit_softcapping = cap("final_logit_softcapping", 30.0);
  if (gemma2) {
    if (reader.has("rope_parameters") && document["rope_parameters"].contains("rope_theta"))
      config.rope_theta = reader.number(document["rope_parameters"]["rope_theta"], "rope_parameters.rope_theta");
    else
      config.rope_theta = reader.number_or("rope_theta", 10000.0);
    const json no_parameters = json::object();
    const json& rope = reader.has("rope_parameters") ? document["rope_parameters"] : no_parameters;
    if (rope.value("rope_type", std::string("default")) != "default")
      reader.fail("rope_parameters", "rope_type is not \"default\", which vktune does not support for Gemma 2");
    config.rope_local_theta = config.rope_theta;
    return;
  }
  const json* parameters = reader.has("rope_parameters") ? &document["rope_parameters"] : nullptr;
  if (parameters && parameters->contains("full_attention")) {
    const json& global = (*parameters)["full_attention"];
    config.rope_theta =
        reader.number(global.value("rope_theta", json(10000.0)), "rope_parameters.full_attention.rope_theta");
    config.rope_scaling =
        parse_rope_scaling(global, "rope_parameters.full_attention", reader, config.max_position_embeddings);
    const json local = parameters->value("sliding_attention", json::object());
    config.rope_local_theta =
        reader.number(local.value("rope_theta", json(10000.0)), "rope_parameters.sliding_attention.rope_theta");
    if (local.value("rope_type", std::string("default")) != "default")
      reader.fail("rope_parameters", "sliding_attention.rope_type is not \"default\", which vktune does not support");
  } else {
    config.rope_theta = reader.number_or("rope_theta", 1000000.0);
    if (reader.has("rope_scaling"))
      config.rope_scaling =
          parse_rope_scaling(document["rope_scaling"], "rope_scaling", reader, config.max_position_embeddings);
    config.rope_local_theta = reader.number_or("rope_local_base_freq", 10000.0);
  }
  if (!(config.rope_local_theta > 0)) reader.fail("rope_local_base_freq", "must be positive");
}

ModelConfig parse_model_config(const json& document, const std::string& where) {
  if (!document.is_object()) throw UserError(where + ": not a JSON object", kConfigHint);
  Reader reader(document, where);
  ModelConfig config;
  config.original = document;
  config.architecture = parse_architecture(document, reader);

  config.hidden_size = reader.bounded("hidden_size", kMaxHidden);
  config.intermediate_size = reader.bounded("intermediate_size", kMaxIntermediate);
  config.num_hidden_layers = reader.bounded("num_hidden_layers", kMaxLayers);
  config.num_attention_heads = reader.bounded("num_attention_heads", kMaxHeads);
  config.num_key_value_heads = reader.bounded_or("num_key_value_heads", config.num_attention_heads, kMaxHeads);
  config.vocab_size = reader.bounded("vocab_size", kMaxVocab);
  if (!reader.has("head_dim") && config.hidden_size % config.num_attention_heads != 0)
    reader.fail("hidden_size", "(" + std::to_string(config.hidden_size) +
                                   ") is not a multiple of num_attention_heads (" +
                                   std::to_string(config.num_attention_heads) + ") and head_dim is not set");
  config.head_dim = reader.bounded_or("head_dim", config.hidden_size / config.num_attention_heads, kMaxHeadDim);
  if (config.head_dim % 2 != 0) reader.fail("head_dim", "must be even for rotary embeddings");
  if (config.num_attention_heads % config.num_key_value_heads != 0)
    reader.fail("num_attention_heads", "(" + std::to_string(config.num_attention_heads) +
                                           ") is not a multiple of num_key_value_heads (" +
                                           std::to_string(config.num_key_value_heads) + ")");
  // transformers' defaults for the four classes when a key is absent.
  const bool phi3 = config.architecture == Architecture::phi3;
  int64_t default_positions = config.architecture == Architecture::llama   ? 2048
                              : config.architecture == Architecture::qwen2 ? 32768
                              : config.architecture == Architecture::qwen3 ? 40960
                              : phi3                                       ? 4096
                                                                           : 4096 * 32;
  config.max_position_embeddings = reader.bounded_or("max_position_embeddings", default_positions, kMaxPositions);
  config.rms_norm_eps = reader.number_or("rms_norm_eps", phi3 ? 1e-5 : 1e-6);  // Phi3Config's default is 1e-5
  // Phi-3: its top-level original_max_position_embeddings (Phi3Config default 4096) is longrope's.
  // resid_pdrop / embd_pdrop / attention_dropout only act in training mode with dropout; vktune
  // trains without them (LoRA dropout is its own setting), so they are ignored.
  const int64_t phi3_original_context =
      phi3 ? reader.bounded_or("original_max_position_embeddings", 4096, kMaxPositions) : 0;
  if (!(config.rms_norm_eps > 0 && config.rms_norm_eps < 1)) reader.fail("rms_norm_eps", "must be in (0, 1)");
  config.tie_word_embeddings = reader.boolean_or("tie_word_embeddings", false);

  config.gemma = config.architecture == Architecture::gemma2 || config.architecture == Architecture::gemma3;
  std::string activation = config.gemma ? reader.string_or("hidden_activation", "gelu_pytorch_tanh")
                                        : reader.string_or("hidden_act", "silu");
  if (config.gemma && activation != "gelu_pytorch_tanh")
    reader.fail("hidden_activation",
                "is \"" + activation + "\"; vktune implements Gemma's GeGLU with gelu_pytorch_tanh");
  if (!config.gemma && activation != "silu")
    reader.fail("hidden_act", "is \"" + activation + "\"; vktune implements the SwiGLU MLP with silu only");
  if (reader.boolean_or("mlp_bias", false))
    reader.fail("mlp_bias", "is true: MLP projections with a bias are not supported",
                "vktune supports Llama-family MLPs without biases (gate/up/down_proj)");
  if (reader.has("partial_rotary_factor") && reader.number_or("partial_rotary_factor", 1.0) != 1.0)
    reader.fail("partial_rotary_factor", "is not 1: partial rotary embeddings are not supported");
  // pretraining_tp > 1 only splits the same matmuls into slices in transformers (same math): ignored.

  if (phi3) {
    config.qkv_bias = config.o_bias = false;  // Phi3Attention: no biases, whatever the config says
  } else if (config.architecture == Architecture::qwen2) {
    config.qkv_bias = true;  // Qwen2Attention: q/k/v_proj with bias, o_proj without, whatever the config says
    config.o_bias = false;
  } else {
    bool attention_bias = reader.boolean_or("attention_bias", false);
    config.qkv_bias = config.o_bias = attention_bias;
  }
  // Qwen3Attention and Gemma3Attention always have q_norm/k_norm.
  config.qk_norm = config.architecture == Architecture::qwen3 || config.architecture == Architecture::gemma3;

  // RoPE: rope_parameters (5.x) takes precedence, as transformers' standardisation does.
  if (config.gemma) {
    parse_gemma(document, reader, config);
  } else if (reader.has("rope_parameters")) {
    const json& parameters = document["rope_parameters"];
    if (!parameters.is_object()) reader.fail("rope_parameters", "must be an object, got " + parameters.dump());
    if (parameters.contains("full_attention") || parameters.contains("sliding_attention"))
      reader.fail("rope_parameters", "holds per-layer-type RoPE settings, which these architectures do not use");
    config.rope_theta = parameters.contains("rope_theta") && !parameters["rope_theta"].is_null()
                            ? reader.number(parameters["rope_theta"], "rope_parameters.rope_theta")
                            : reader.number_or("rope_theta", 10000.0);
    config.rope_scaling = parse_rope_scaling(parameters, "rope_parameters", reader, config.max_position_embeddings,
                                             phi3_original_context);
  } else {
    config.rope_theta = reader.number_or("rope_theta", 10000.0);
    if (reader.has("rope_scaling"))
      config.rope_scaling = parse_rope_scaling(document["rope_scaling"], "rope_scaling", reader,
                                               config.max_position_embeddings, phi3_original_context);
  }
  if (!(config.rope_theta > 0)) reader.fail("rope_theta", "must be positive");
  if (config.rope_scaling.type == "longrope") {
    const size_t pairs = static_cast<size_t>(config.head_dim / 2);
    const char* key = reader.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
    for (auto [name, factors] : {std::pair{".short_factor", &config.rope_scaling.short_factor},
                                 std::pair{".long_factor", &config.rope_scaling.long_factor}})
      if (factors->size() != pairs)
        reader.fail(std::string(key) + name, "has " + std::to_string(factors->size()) + " values; head_dim " +
                                                 std::to_string(config.head_dim) + " needs " + std::to_string(pairs) +
                                                 " (one per rotary pair)");
  }

  config.bos_token_id = reader.optional_integer("bos_token_id");
  if (reader.has("eos_token_id")) config.eos_token_ids = parse_eos(document["eos_token_id"], reader);
  config.pad_token_id = reader.optional_integer("pad_token_id");
  // Old conversions write pad_token_id -1 for "none" (transformers ignores it too).
  if (config.pad_token_id && *config.pad_token_id == -1) config.pad_token_id.reset();
  auto check_token = [&](const char* key, int64_t id) {
    if (id < 0 || id >= config.vocab_size)
      reader.fail(
          key, "is " + std::to_string(id) + ", outside the vocabulary [0, " + std::to_string(config.vocab_size) + ")");
  };
  if (config.bos_token_id) check_token("bos_token_id", *config.bos_token_id);
  for (int64_t id : config.eos_token_ids) check_token("eos_token_id", id);
  if (config.pad_token_id) check_token("pad_token_id", *config.pad_token_id);
  config.torch_dtype = reader.string_or("torch_dtype", reader.string_or("dtype", ""));

  // Sliding windows.
  config.sliding_window_layers.assign(static_cast<size_t>(config.num_hidden_layers), false);
  std::optional<int64_t> window = reader.optional_integer("sliding_window");
  if (window && *window <= 0) reader.fail("sliding_window", "must be positive or null");
  if (config.gemma) {
    if (!window) reader.fail("sliding_window", "is not set; Gemma needs its local layers' window");
    config.sliding_window = window;
    // The configs' default patterns: every sliding_window_pattern-th layer is global (Gemma 3: 6,
    // Gemma 2: every second).
    int64_t fallback = config.architecture == Architecture::gemma2 ? 2 : 6;
    int64_t pattern =
        reader.has("sliding_window_pattern") ? reader.bounded("sliding_window_pattern", kMaxLayers) : fallback;
    for (int64_t layer = 0; layer < config.num_hidden_layers; layer++)
      config.sliding_window_layers[static_cast<size_t>(layer)] = (layer + 1) % pattern != 0;
  } else if (config.architecture == Architecture::mistral || phi3) {
    if (window) {
      config.sliding_window = window;
      config.sliding_window_layers.assign(config.sliding_window_layers.size(), true);
    }
  } else if (config.architecture == Architecture::qwen2 || config.architecture == Architecture::qwen3) {
    if (reader.boolean_or("use_sliding_window", false) && window) {
      config.sliding_window = window;
      int64_t first = reader.has("max_window_layers")
                          ? reader.integer(document["max_window_layers"], "max_window_layers")
                          : 28;  // Qwen2Config's and Qwen3Config's default
      for (int64_t layer = std::max<int64_t>(first, 0); layer < config.num_hidden_layers; layer++)
        config.sliding_window_layers[static_cast<size_t>(layer)] = true;
    }
  }
  // transformers >= 4.53 may spell the per-layer choice out; it wins when present.
  if (reader.has("layer_types") && config.sliding_window) {
    const json& types = document["layer_types"];
    if (!types.is_array() || static_cast<int64_t>(types.size()) != config.num_hidden_layers)
      reader.fail("layer_types", "must list one attention type per layer");
    for (size_t layer = 0; layer < types.size(); layer++)
      config.sliding_window_layers[layer] = types[layer] == "sliding_attention";
  }
  if (config.sliding_window) {
    bool any = false;
    for (bool uses : config.sliding_window_layers) any = any || uses;
    if (!any) config.sliding_window.reset();
  }
  return config;
}

void check_tokenizer_fits(const ModelConfig& config, size_t tokenizer_ids, const std::string& where) {
  if (tokenizer_ids > static_cast<size_t>(config.vocab_size))
    throw UserError(where + ": the tokenizer has ids up to " + std::to_string(tokenizer_ids - 1) +
                        ", but config.json's vocab_size is " + std::to_string(config.vocab_size) +
                        ": those tokens have no embedding row",
                    "the tokenizer does not belong to this model, or tokens were added without resizing the "
                    "embeddings (transformers: model.resize_token_embeddings(len(tokenizer)))");
}

ModelConfig load_model_config(const fs::path& path) {
  if (is_gguf_file(path)) return gguf_model_config(GgufFile(path));
  fs::path file = fs::is_directory(path) ? path / "config.json" : path;
  if (!fs::exists(file))
    throw UserError("no config.json at " + file.string(), "pass a Hugging Face model folder (it holds config.json)");
  json document;
  try {
    document = json::parse(read_text_file(file));
  } catch (const json::exception& error) {
    throw UserError(file.string() + ": not valid JSON: " + error.what(), kConfigHint);
  }
  return parse_model_config(document, file.string());
}

json to_json(const ModelConfig& config) {
  json document = config.original.is_object() ? config.original : json::object();
  const bool fresh = !config.original.is_object();
  document["architectures"] = json::array({architecture_name(config.architecture)});
  document["model_type"] = model_type_name(config.architecture);
  document["hidden_size"] = config.hidden_size;
  document["intermediate_size"] = config.intermediate_size;
  document["num_hidden_layers"] = config.num_hidden_layers;
  document["num_attention_heads"] = config.num_attention_heads;
  document["num_key_value_heads"] = config.num_key_value_heads;
  document["head_dim"] = config.head_dim;
  document["vocab_size"] = config.vocab_size;
  document["max_position_embeddings"] = config.max_position_embeddings;
  document["rms_norm_eps"] = config.rms_norm_eps;
  document["tie_word_embeddings"] = config.tie_word_embeddings;
  if (!config.gemma) document["hidden_act"] = "silu";  // Gemma's hidden_activation stays as read
  if (config.architecture != Architecture::qwen2 && !config.fused_projections())
    document["attention_bias"] = config.qkv_bias;
  if (config.architecture == Architecture::llama) document["mlp_bias"] = false;

  json scaling = nullptr;
  if (config.rope_scaling.type == "linear") {
    scaling = {{"rope_type", "linear"}, {"factor", config.rope_scaling.factor}};
  } else if (config.rope_scaling.type == "llama3") {
    scaling = {{"rope_type", "llama3"},
               {"factor", config.rope_scaling.factor},
               {"low_freq_factor", config.rope_scaling.low_freq_factor},
               {"high_freq_factor", config.rope_scaling.high_freq_factor},
               {"original_max_position_embeddings", config.rope_scaling.original_max_position_embeddings}};
  } else if (config.rope_scaling.type == "dynamic") {
    scaling = {{"rope_type", "dynamic"}, {"factor", config.rope_scaling.factor}};
  } else if (config.rope_scaling.type == "yarn") {
    const RopeScaling& yarn = config.rope_scaling;
    scaling = {{"rope_type", "yarn"},
               {"factor", yarn.factor},
               {"original_max_position_embeddings", yarn.original_max_position_embeddings},
               {"beta_fast", yarn.beta_fast},
               {"beta_slow", yarn.beta_slow}};
    if (yarn.attention_factor_given) scaling["attention_factor"] = yarn.attention_factor;
    if (!yarn.truncate) scaling["truncate"] = false;
    if (yarn.mscale) scaling["mscale"] = *yarn.mscale;
    if (yarn.mscale_all_dim) scaling["mscale_all_dim"] = *yarn.mscale_all_dim;
  }
  if (config.gemma || config.rope_scaling.type == "longrope") {
    // Gemma's RoPE settings (per layer type) and longrope's factor lists stay as read: only models
    // read from a file have them.
  } else if (document.contains("rope_parameters")) {
    json parameters = scaling.is_null() ? json{{"rope_type", "default"}} : scaling;
    parameters["rope_theta"] = config.rope_theta;
    document["rope_parameters"] = parameters;
    document.erase("rope_scaling");
    document.erase("rope_theta");
  } else {
    document["rope_theta"] = config.rope_theta;
    document["rope_scaling"] = scaling;
  }

  document["bos_token_id"] = config.bos_token_id ? json(*config.bos_token_id) : json(nullptr);
  if (config.eos_token_ids.empty())
    document["eos_token_id"] = nullptr;
  else if (config.eos_token_ids.size() == 1)
    document["eos_token_id"] = config.eos_token_ids[0];
  else
    document["eos_token_id"] = config.eos_token_ids;
  if (config.pad_token_id) document["pad_token_id"] = *config.pad_token_id;
  if (!config.torch_dtype.empty()) {
    // Keep the spelling the source used; transformers 4.x reads only torch_dtype, 5.x reads both.
    if (document.contains("dtype") && !document.contains("torch_dtype"))
      document["dtype"] = config.torch_dtype;
    else
      document["torch_dtype"] = config.torch_dtype;
  }

  if (config.architecture == Architecture::mistral || config.architecture == Architecture::phi3) {
    document["sliding_window"] = config.sliding_window ? json(*config.sliding_window) : json(nullptr);
  } else if (config.architecture == Architecture::qwen2 || config.architecture == Architecture::qwen3) {
    document["use_sliding_window"] = config.sliding_window.has_value();
    if (config.sliding_window) {
      document["sliding_window"] = *config.sliding_window;
      int64_t first = config.num_hidden_layers;
      for (int64_t layer = config.num_hidden_layers - 1; layer >= 0 && config.sliding_window_layers[layer]; layer--)
        first = layer;
      document["max_window_layers"] = first;
    } else if (fresh) {
      document["sliding_window"] = nullptr;
      document["max_window_layers"] = config.num_hidden_layers;
    }
  }
  if (document.contains("layer_types")) {
    json types = json::array();
    for (int64_t layer = 0; layer < config.num_hidden_layers; layer++)
      types.push_back(config.sliding_window && config.sliding_window_layers[layer] ? "sliding_attention"
                                                                                   : "full_attention");
    document["layer_types"] = types;
  }
  if (fresh) {
    document["initializer_range"] = 0.02;
    document["attention_dropout"] = 0.0;
    document["use_cache"] = true;
  }
  return document;
}

void save_model_config(const ModelConfig& config, const fs::path& path) {
  write_file_atomically(path, to_json(config).dump(2) + "\n");
}

std::vector<float> apply_rope_scaling(std::span<const float> inv_freq, const RopeScaling& scaling) {
  std::vector<float> result(inv_freq.begin(), inv_freq.end());
  if (scaling.type == "default") return result;
  const float factor = static_cast<float>(scaling.factor);
  if (scaling.type == "linear") {
    for (float& value : result) value = value / factor;  // inv_freq /= factor
    return result;
  }
  VKT_ASSERT(scaling.type == "llama3", "unsupported rope type " + scaling.type);
  // transformers' _compute_llama3_parameters, element by element, with torch's semantics: tensors
  // are fp32 and a Python scalar operand is first converted to fp32; `scalar / tensor` is
  // evaluated by torch as reciprocal(tensor) * scalar.
  const double old_context = static_cast<double>(scaling.original_max_position_embeddings);
  const float low_freq_wavelen = static_cast<float>(old_context / scaling.low_freq_factor);
  const float high_freq_wavelen = static_cast<float>(old_context / scaling.high_freq_factor);
  const float two_pi = static_cast<float>(2 * std::numbers::pi);
  const float old_context_f = static_cast<float>(old_context);
  const float low_f = static_cast<float>(scaling.low_freq_factor);
  const float band = static_cast<float>(scaling.high_freq_factor - scaling.low_freq_factor);
  for (size_t i = 0; i < result.size(); i++) {
    const float freq = inv_freq[i];
    const float wavelen = (1.0f / freq) * two_pi;  // 2 * math.pi / inv_freq
    const float llama =
        wavelen > low_freq_wavelen ? freq / factor : freq;  // where(wavelen > low, inv_freq / factor, inv_freq)
    const float smooth = ((1.0f / wavelen) * old_context_f - low_f) / band;  // (old / wavelen - low) / (high - low)
    const float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    result[i] = medium ? smoothed : llama;
  }
  return result;
}

std::vector<float> rope_inv_freq(const ModelConfig& config, bool long_factors, int64_t positions) {
  const int64_t dim = config.head_dim;
  const RopeScaling& scaling = config.rope_scaling;
  if (scaling.type == "yarn") return yarn_inv_freq(dim, config.rope_theta, scaling);
  if (scaling.type == "dynamic")
    return dynamic_inv_freq(dim, config.rope_theta, scaling.factor, config.max_position_embeddings, positions);
  const std::vector<float>* ext = scaling.type != "longrope" ? nullptr
                                  : long_factors             ? &scaling.long_factor
                                                             : &scaling.short_factor;
  VKT_ASSERT(!ext || ext->size() == static_cast<size_t>(dim / 2), "longrope factors: one per rotary pair");
  VKT_ASSERT(dim > 0 && dim % 2 == 0, "head_dim must be positive and even");
  const float theta = static_cast<float>(config.rope_theta);  // torch converts the Python float base to fp32
  std::vector<float> inv_freq(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; i++) {
    // torch.arange(0, dim, 2, dtype=int64).float() / dim: an fp32 division.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    // base ** exponent in fp32: computed in double and rounded once, i.e. correctly rounded.
    const float power = static_cast<float>(std::pow(static_cast<double>(theta), static_cast<double>(exponent)));
    // longrope: 1.0 / (ext_factors * base**inv_freq_shape), fp32 throughout.
    inv_freq[static_cast<size_t>(i)] = 1.0f / (ext ? (*ext)[static_cast<size_t>(i)] * power : power);
  }
  if (!config.rope_frequency_factors.empty()) {
    VKT_ASSERT(config.rope_frequency_factors.size() == inv_freq.size(), "rope_frequency_factors size");
    for (size_t i = 0; i < inv_freq.size(); i++) inv_freq[i] /= config.rope_frequency_factors[i];  // as ggml's rope
    return inv_freq;
  }
  return ext ? inv_freq : apply_rope_scaling(inv_freq, config.rope_scaling);
}

}  // namespace vkt::model
