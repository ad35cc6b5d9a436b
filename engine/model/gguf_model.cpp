#include "engine/model/gguf_model.hpp"

#include <array>
#include <fstream>

#include "engine/base/error.hpp"
#include "engine/model/gguf_families.hpp"
#include "engine/model/safetensors.hpp"

namespace vkt::model {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct GgufArchitecture {
  const char* gguf;      // general.architecture
  const char* hf_class;  // config.json "architectures"
  const char* hf_type;   // config.json "model_type"
  bool permuted_qk;      // the converter interleaves attn_q/attn_k rows (ggml's adjacent-pair RoPE)
};

constexpr std::array<GgufArchitecture, 6> kArchitectures{{
    {"llama", "LlamaForCausalLM", "llama", true},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", false},
    {"qwen3", "Qwen3ForCausalLM", "qwen3", false},
    {"gemma2", "Gemma2ForCausalLM", "gemma2", false},
    {"gemma3", "Gemma3ForCausalLM", "gemma3_text", false},
    {"phi3", "Phi3ForCausalLM", "phi3", false},
}};

const GgufArchitecture& architecture_of(const GgufFile& file) {
  if (file.string_or_none("general.type") == "adapter")
    throw UserError(file.path().string() + " is a GGUF adapter (general.type = adapter), not a model",
                    "pass the base model's .gguf to --model");
  const std::string name = file.get_string("general.architecture");
  for (const GgufArchitecture& architecture : kArchitectures)
    if (name == architecture.gguf) return architecture;
  throw UserError(file.path().string() + ": general.architecture is \"" + name + "\", which vktune does not load",
                  "GGUF models of architecture llama (Llama, Mistral, SmolLM), qwen2, qwen3, gemma2, gemma3 and phi3 "
                  "load; for others "
                  "use the Hugging Face folder");
}

const char* torch_dtype_of(quant::GgmlType type) {
  if (type == quant::GgmlType::F16) return "float16";
  if (type == quant::GgmlType::BF16) return "bfloat16";
  return "float32";
}

// The layer part of an HF name -> the GGUF one (Phi-3's fused qkv_proj / gate_up_proj stay fused).
constexpr std::array<std::pair<const char*, const char*>, 13> kLayerNames{{
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    {"self_attn.qkv_proj", "attn_qkv"},
    {"mlp.gate_up_proj", "ffn_up"},
}};

// Gemma 2/3's four norms per layer, looked up before kLayerNames.
constexpr std::array<std::pair<const char*, const char*>, 3> kGemmaLayerNames{{
    {"post_attention_layernorm", "post_attention_norm"},
    {"pre_feedforward_layernorm", "ffn_norm"},
    {"post_feedforward_layernorm", "post_ffw_norm"},
}};

}  // namespace

bool is_gguf_file(const fs::path& path) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

std::vector<float> permute_qk_rows(const std::vector<float>& values, uint64_t rows, int64_t heads, bool to_gguf) {
  const uint64_t cols = values.size() / rows, head_rows = rows / static_cast<uint64_t>(heads), half = head_rows / 2;
  std::vector<float> out(values.size());
  for (uint64_t h = 0; h < static_cast<uint64_t>(heads); h++)
    for (uint64_t j = 0; j < half; j++)
      for (uint64_t s = 0; s < 2; s++) {
        const uint64_t gguf_row = h * head_rows + 2 * j + s, hf_row = h * head_rows + s * half + j;
        const float* from = values.data() + (to_gguf ? hf_row : gguf_row) * cols;
        std::copy(from, from + cols, out.data() + (to_gguf ? gguf_row : hf_row) * cols);
      }
  return out;
}

std::string gguf_tensor_name(const std::string& hf_name, std::string_view architecture) {
  if (hf_name == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf_name == "model.norm.weight") return "output_norm.weight";
  if (hf_name == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (hf_name.rfind(prefix, 0) != 0) return "";
  const size_t dot = hf_name.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf_name.substr(prefix.size(), dot - prefix.size());
  const std::string rest = hf_name.substr(dot + 1);  // "self_attn.q_proj.weight"
  if (gguf_stores_norm_plus_one(architecture))
    for (const auto& [hf, gguf] : kGemmaLayerNames) {
      const std::string part = std::string(hf) + ".";
      if (rest.rfind(part, 0) == 0) return "blk." + layer + "." + gguf + "." + rest.substr(part.size());
    }
  for (const auto& [hf, gguf] : kLayerNames) {
    const std::string part = std::string(hf) + ".";
    if (rest.rfind(part, 0) == 0) return "blk." + layer + "." + gguf + "." + rest.substr(part.size());
  }
  return "";
}

json gguf_hf_config(const GgufFile& file) {
  const GgufArchitecture& architecture = architecture_of(file);
  const std::string arch = architecture.gguf;
  auto key = [&](const char* name) { return arch + "." + name; };
  json document;
  document["architectures"] = json::array({architecture.hf_class});
  document["model_type"] = architecture.hf_type;
  document["hidden_act"] = "silu";
  document["hidden_size"] = file.get_uint(key("embedding_length"));
  document["intermediate_size"] = file.get_uint(key("feed_forward_length"));
  document["num_hidden_layers"] = file.get_uint(key("block_count"));
  const uint64_t heads = file.get_uint(key("attention.head_count"));
  document["num_attention_heads"] = heads;
  document["num_key_value_heads"] = file.uint_or_none(key("attention.head_count_kv")).value_or(heads);
  if (auto head_dim = file.uint_or_none(key("attention.key_length"))) {
    document["head_dim"] = *head_dim;
    if (auto value_dim = file.uint_or_none(key("attention.value_length")); value_dim && *value_dim != *head_dim)
      throw UserError(file.path().string() + ": " + key("attention.value_length") + " (" + std::to_string(*value_dim) +
                          ") differs from " + key("attention.key_length") + " (" + std::to_string(*head_dim) + ")",
                      "vktune's attention needs equal key and value head sizes");
  }
  const uint64_t head_dim = document.contains("head_dim") ? document["head_dim"].get<uint64_t>()
                                                          : document["hidden_size"].get<uint64_t>() / heads;
  if (auto rotary = file.uint_or_none(key("rope.dimension_count")); rotary && *rotary != head_dim)
    throw UserError(file.path().string() + ": " + key("rope.dimension_count") + " is " + std::to_string(*rotary) +
                        ", not the head size " + std::to_string(head_dim),
                    "partial rotary embeddings are not supported");
  if (auto context = file.uint_or_none(key("context_length"))) document["max_position_embeddings"] = *context;
  if (auto eps = file.float_or_none(key("attention.layer_norm_rms_epsilon"))) document["rms_norm_eps"] = *eps;
  document["rope_theta"] = file.float_or_none(key("rope.freq_base")).value_or(10000.0);
  if (auto scaling = file.string_or_none(key("rope.scaling.type")); scaling && *scaling != "none") {
    // linear is what vktune implements; other types go to the parser, which names them.
    json rope = {{"rope_type", *scaling}};
    if (auto factor = file.float_or_none(key("rope.scaling.factor"))) rope["factor"] = *factor;
    if (auto original = file.uint_or_none(key("rope.scaling.original_context_length")))
      rope["original_max_position_embeddings"] = *original;
    document["rope_scaling"] = rope;
  }
  const GgufTensor& embeddings = file.tensor("token_embd.weight");
  uint64_t vocab = embeddings.shape().at(0);
  if (auto stated = file.uint_or_none(key("vocab_size")))
    vocab = *stated;
  else if (file.contains("tokenizer.ggml.tokens"))
    vocab = file.get_string_array("tokenizer.ggml.tokens").size();
  document["vocab_size"] = vocab;
  document["tie_word_embeddings"] = file.find_tensor("output.weight") == nullptr;
  if (architecture.hf_type == std::string("llama"))
    document["attention_bias"] = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (auto id = file.uint_or_none("tokenizer.ggml.bos_token_id")) document["bos_token_id"] = *id;
  if (auto id = file.uint_or_none("tokenizer.ggml.eos_token_id")) document["eos_token_id"] = *id;
  if (auto id = file.uint_or_none("tokenizer.ggml.padding_token_id")) document["pad_token_id"] = *id;
  const GgufTensor* query = file.find_tensor("blk.0.attn_q.weight");
  document["torch_dtype"] = torch_dtype_of((query ? *query : file.tensor("blk.0.attn_qkv.weight")).type);
  add_gguf_family_config(file, arch, document);
  return document;
}

ModelConfig gguf_model_config(const GgufFile& file) {
  ModelConfig config = parse_model_config(gguf_hf_config(file), file.path().string() + " (GGUF metadata)");
  if (const GgufTensor* factors = file.find_tensor("rope_freqs.weight")) {
    if (factors->element_count() != static_cast<uint64_t>(config.head_dim / 2))
      throw UserError(file.path().string() + ": tensor rope_freqs.weight has " +
                          std::to_string(factors->element_count()) +
                          " elements, not head_dim / 2 = " + std::to_string(config.head_dim / 2),
                      "the file is damaged or not a llama.cpp model file");
    config.rope_frequency_factors = file.to_fp32(*factors);
  }
  return config;
}

GgufTensorSource::GgufTensorSource(const fs::path& path, const ModelConfig& config)
    : file_(path),
      architecture_(architecture_of(file_).gguf),
      permuted_qk_(architecture_of(file_).permuted_qk),
      heads_(config.num_attention_heads),
      kv_heads_(config.num_key_value_heads) {}

const GgufTensor* GgufTensorSource::find(const std::string& hf_name) const {
  const std::string name = gguf_tensor_name(hf_name, architecture_);
  return name.empty() ? nullptr : file_.find_tensor(name);
}

const GgufTensor& GgufTensorSource::tensor(const std::string& hf_name) const {
  const std::string name = gguf_tensor_name(hf_name, architecture_);
  if (name.empty())
    throw UserError(where() + ": no GGUF tensor corresponds to " + hf_name,
                    "vktune reads the tensors llama.cpp's converter writes for llama, qwen2, qwen3, gemma2, gemma3 "
                    "and phi3");
  return file_.tensor(name);
}

bool GgufTensorSource::contains(const std::string& name) const { return find(name) != nullptr; }

uint64_t GgufTensorSource::element_count(const std::string& name) const { return tensor(name).element_count(); }

std::vector<uint64_t> GgufTensorSource::shape(const std::string& name) const { return tensor(name).shape(); }

void GgufTensorSource::read_rows(const std::string& name, uint64_t first_row, uint64_t cols,
                                 std::span<float> out) const {
  const GgufTensor& t = tensor(name);
  // ggml rows are ne[0] long and a whole number of blocks, so a range of rows is a range of blocks.
  VKT_ASSERT(t.ne.at(0) == cols && out.size() % cols == 0, "GGUF row read of " + name + " across rows");
  VKT_ASSERT(!permuted_qk_ || (name.find("q_proj") == std::string::npos && name.find("k_proj") == std::string::npos),
             "permuted GGUF rows are read whole");
  const uint64_t row_bytes = quant::ggml_row_bytes(t.type, cols);
  quant::dequantize_ggml(t.type, t.bytes.subspan(first_row * row_bytes, out.size() / cols * row_bytes), out);
  require_finite(out, where(), name);
}

std::vector<float> GgufTensorSource::read(const std::string& name) const {
  const GgufTensor& t = tensor(name);
  std::vector<float> values = file_.to_fp32(t);
  require_finite(values, where(), name);
  const std::string gguf = gguf_tensor_name(name, architecture_);
  if (gguf_stores_norm_plus_one(architecture_) && gguf.ends_with("norm.weight")) {
    for (float& value : values) value -= 1.0f;  // Gemma's (1 + w) back to HF's w
    return values;
  }
  if (!permuted_qk_) return values;
  const uint64_t rows = t.ne.size() > 1 ? t.ne[1] : t.ne[0];
  if (gguf.find(".attn_q.") != std::string::npos) return permute_qk_rows(values, rows, heads_, false);
  if (gguf.find(".attn_k.") != std::string::npos) return permute_qk_rows(values, rows, kv_heads_, false);
  return values;
}

std::vector<uint8_t> GgufTensorSource::read_raw_rows(const std::string& name, uint64_t first_row, uint64_t rows,
                                                     uint64_t cols) const {
  const GgufTensor& t = tensor(name);
  VKT_ASSERT(t.ne.at(0) == cols, "GGUF raw row read of " + name + " across rows");
  const uint64_t row_bytes = quant::ggml_row_bytes(t.type, cols), total_rows = t.element_count() / cols;
  VKT_ASSERT(first_row + rows <= total_rows, "GGUF raw row read of " + name + " past its end");
  const std::string gguf = gguf_tensor_name(name);
  const bool q = gguf.find(".attn_q.") != std::string::npos, k = gguf.find(".attn_k.") != std::string::npos;
  std::vector<uint8_t> out(rows * row_bytes);
  for (uint64_t r = 0; r < rows; r++) {
    uint64_t row = first_row + r;  // HF row; its stored row when the converter permuted it:
    if (permuted_qk_ && (q || k)) {
      const uint64_t head_rows = total_rows / static_cast<uint64_t>(q ? heads_ : kv_heads_), half = head_rows / 2;
      const uint64_t h = row / head_rows, within = row % head_rows, s = within / half, j = within % half;
      row = h * head_rows + 2 * j + s;
    }
    std::copy_n(t.bytes.begin() + static_cast<std::ptrdiff_t>(row * row_bytes), row_bytes,
                out.begin() + static_cast<std::ptrdiff_t>(r * row_bytes));
  }
  return out;
}

}  // namespace vkt::model
