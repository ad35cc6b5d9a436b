#pragma once
// The shape of a Llama-family decoder and the names of its linear modules: the vocabulary that
// the planner, the model, the trainer, the merger and the app share. Nothing here allocates.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace vkt::spec {

// The dimensions of a Llama-family decoder (what config.json says), nothing else.
struct ModelShape {
  uint64_t hidden = 0;        // hidden_size
  uint64_t intermediate = 0;  // intermediate_size
  uint64_t layers = 0;        // num_hidden_layers
  uint64_t heads = 0;         // num_attention_heads
  uint64_t kv_heads = 0;      // num_key_value_heads
  uint64_t head_dim = 0;      // head_dim
  uint64_t vocab = 0;         // vocab_size
  bool tied_embeddings = false;
  bool qkv_bias = false;  // Qwen2
  bool qk_norm = false;   // Qwen3, Gemma 3: q_norm/k_norm weights (head_dim each) per layer
  bool gemma = false;     // Gemma layer: norms after attention and after the MLP
};

// The seven linear modules of a layer, in PEFT's names.
enum class Module : uint8_t { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, count };
constexpr size_t module_count = static_cast<size_t>(Module::count);
const char* module_name(Module module);  // "q_proj"
std::optional<Module> module_from_name(const std::string& name);
std::string module_path(Module module);  // "self_attn.q_proj" / "mlp.gate_proj"
uint64_t module_in_features(const ModelShape& shape, Module module);
uint64_t module_out_features(const ModelShape& shape, Module module);

}  // namespace vkt::spec
