#pragma once
// Hugging Face config.json for the decoder-only models vktune trains: LlamaForCausalLM (Llama 1-3,
// TinyLlama, SmolLM), Qwen2ForCausalLM, MistralForCausalLM, Qwen3ForCausalLM, Gemma 2/3 and
// Phi3ForCausalLM. Reads both the transformers 4.x
// spelling (rope_theta + rope_scaling, torch_dtype) and the 5.x one (rope_parameters, dtype), and
// writes a config.json that transformers loads back.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vkt::model {

enum class Architecture { llama, qwen2, mistral, qwen3, gemma2, gemma3, phi3 };
const char* architecture_name(Architecture architecture);  // "LlamaForCausalLM"
const char* model_type_name(Architecture architecture);    // "llama"
std::string supported_architectures();                     // for messages

// RoPE frequency scaling. "default" (none), "linear" (inv_freq / factor), "llama3" (Llama 3.1's
// smooth low/high frequency blend), "dynamic" (NTK: a larger base once a forward's length passes
// max_position_embeddings), "yarn" (interpolation/extrapolation ramp between beta_fast and beta_slow,
// cos/sin times attention_factor) and "longrope" (Phi-3: inv_freq / factor per rotary pair, the
// short or the long set, cos/sin times attention_factor); other types are rejected on load.
struct RopeScaling {
  std::string type = "default";
  double factor = 1.0;                           // linear, llama3, longrope (default: max / original positions)
  double low_freq_factor = 1.0;                  // llama3
  double high_freq_factor = 4.0;                 // llama3
  int64_t original_max_position_embeddings = 0;  // llama3, longrope: the pretraining context length
  std::vector<float> short_factor;               // longrope: (head_dim / 2), as torch.tensor(..., float32)
  std::vector<float> long_factor;                // longrope: (head_dim / 2)
  double attention_factor = 1.0;                 // longrope, yarn: cos and sin are multiplied by it
  double beta_fast = 32;                         // yarn: rotations where extrapolation ends
  double beta_slow = 1;                          // yarn: rotations where interpolation starts
  bool truncate = true;                          // yarn: floor/ceil the correction range
  // yarn: written back only when config.json had them (the attention factor derived from them stays
  // in attention_factor).
  std::optional<double> mscale, mscale_all_dim;
  bool attention_factor_given = false;  // yarn: config.json (or --rope-attention-factor) set attention_factor
};

struct ModelConfig {
  Architecture architecture = Architecture::llama;
  int64_t hidden_size = 0;        // d_model
  int64_t intermediate_size = 0;  // MLP width (gate/up out-features)
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // default: num_attention_heads (no GQA)
  int64_t head_dim = 0;             // default: hidden_size / num_attention_heads
  int64_t vocab_size = 0;           // rows of embed_tokens / lm_head
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // GGUF's rope_freqs tensor (head_dim / 2): inv_freq[i] / factor[i], in place of rope_scaling (llama.cpp's
  // converter writes Llama 3.1's scaling this way). Empty for HF configs.
  std::vector<float> rope_frequency_factors;
  bool tie_word_embeddings = false;  // lm_head shares embed_tokens' weight
  bool qkv_bias = false;             // q/k/v projections have a bias (Qwen2 always; Llama attention_bias)
  bool o_bias = false;               // o_proj has a bias (Llama attention_bias only)
  bool qk_norm = false;              // Qwen3, Gemma 3: RMSNorm over head_dim of each q and k head, before RoPE
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // eos_token_id may be one id or a list (Llama 3 instruct)
  std::optional<int64_t> pad_token_id;
  std::string torch_dtype;  // "bfloat16", "float16", "float32"; empty when absent
  // Sliding-window attention (Mistral v0.1's sliding_window; Qwen2's use_sliding_window with
  // max_window_layers). nullopt: every layer attends to the whole context. A layer that uses the
  // window attends only to the last `sliding_window` positions -- for sequences no longer than the
  // window this is the same as full attention, so it may be ignored there.
  std::optional<int64_t> sliding_window;
  std::vector<bool> sliding_window_layers;  // per layer (num_hidden_layers): uses sliding_window
  // Gemma 2/3 (Gemma2ForCausalLM, Gemma3ForCausalLM): (1 + w) RMSNorms, norms before and after
  // attention and MLP, GeGLU (gelu_pytorch_tanh), embeddings scaled by sqrt(hidden_size), attention
  // scale query_pre_attn_scalar^-0.5; Gemma 3: q_norm/k_norm, local (sliding) layers with their own
  // RoPE base; Gemma 2: attention and final logit soft-capping.
  bool gemma = false;
  double query_pre_attn_scalar = 0;    // 0: head_dim
  double rope_local_theta = 0;         // RoPE base of sliding-window layers; 0: rope_theta
  double attn_logit_softcapping = 0;   // 0: none
  double final_logit_softcapping = 0;  // 0: none
  // The parsed config.json (empty for a config built in code): to_json starts from it so keys this
  // struct does not model (initializer_range, quantization settings, ...) survive a round trip.
  nlohmann::json original;

  bool sliding_window_matters(int64_t sequence_length) const {
    return sliding_window.has_value() && sequence_length > *sliding_window;
  }
  // transformers' longrope uses long_factor for a forward whose positions reach past the pretraining
  // context (max(position_ids) + 1 > original_max_position_embeddings), short_factor otherwise.
  bool rope_uses_long_factors(int64_t positions) const {
    return rope_scaling.type == "longrope" && positions > rope_scaling.original_max_position_embeddings;
  }
  bool fused_projections() const { return architecture == Architecture::phi3; }  // qkv_proj, gate_up_proj
  int64_t q_size() const { return num_attention_heads * head_dim; }              // q_proj out-features
  int64_t kv_size() const { return num_key_value_heads * head_dim; }             // k_proj/v_proj out-features
};

// Parses a config.json document; `where` names it in errors (e.g. the file path). UserError for
// an unsupported architecture (listing the supported ones), a missing or invalid field (naming
// it), mlp_bias, a non-silu activation, partial rotary embeddings or an unsupported rope type.
ModelConfig parse_model_config(const nlohmann::json& document, const std::string& where);
// UserError unless every tokenizer id (0 .. tokenizer_ids - 1) has a row in the embedding table:
// an id >= vocab_size would read past it (or silently get a zero embedding).
void check_tokenizer_fits(const ModelConfig& config, size_t tokenizer_ids, const std::string& where);
// Reads <path>/config.json when given a directory, a GGUF file's metadata (gguf_model.hpp), else the file itself.
ModelConfig load_model_config(const std::filesystem::path& path);
// An HF-compatible config.json document (transformers 4.x spelling, which 5.x also reads; a
// config read with rope_parameters is written back with rope_parameters).
nlohmann::json to_json(const ModelConfig& config);
void save_model_config(const ModelConfig& config, const std::filesystem::path& path);  // atomically

// RoPE inverse frequencies, (head_dim / 2) fp32, as transformers initialises them:
//   inv_freq[i] = 1 / theta^(float(2i) / head_dim)   in fp32 arithmetic (torch's default rope init),
// then rope_scaling applied with torch's fp32 operation order (apply_rope_scaling). theta^x is
// correctly rounded here; torch's CPU pow (SLEEF, 1-ulp) rounds the other way for a few elements,
// so results match torch to 1 ulp (most elements exactly).
// longrope: inv_freq[i] = 1 / (factor[i] * theta^(2i / head_dim)) with the short or the long factors.
// dynamic: `positions` is the forward's length (max(position_ids) + 1; 0: max_position_embeddings),
// as transformers' dynamic_frequency_update recomputes it.
std::vector<float> rope_inv_freq(const ModelConfig& config, bool long_factors = false, int64_t positions = 0);
// The scaling step alone (exposed so tests can feed it torch's own unscaled inv_freq and
// compare bit for bit).
std::vector<float> apply_rope_scaling(std::span<const float> inv_freq, const RopeScaling& scaling);
// transformers' _compute_yarn_parameters and _compute_dynamic_ntk_parameters (rope_scaling.cpp),
// fp32 wherever torch computes in fp32.
std::vector<float> yarn_inv_freq(int64_t head_dim, double theta, const RopeScaling& scaling);
std::vector<float> dynamic_inv_freq(int64_t head_dim, double theta, double factor, int64_t max_position_embeddings,
                                    int64_t positions);
// yarn's attention factor when config.json gives none: get_mscale(factor) (or the mscale ratio).
double yarn_attention_factor(const RopeScaling& scaling);

}  // namespace vkt::model
