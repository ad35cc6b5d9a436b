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
  // Phi-3: q/k/v stored as one qkv_proj ((heads + 2·kv_heads)·head_dim, hidden) and gate/up as one
  // gate_up_proj (2·intermediate, hidden), each adapted by PEFT as one module (one lora_A, one lora_B).
  bool fused_projections = false;
  bool longrope = false;  // Phi-3 longrope: a second set of RoPE frequencies (long_factor) for long passes
};

// The seven linear modules of a layer, in PEFT's names.
enum class Module : uint8_t { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, count };
constexpr size_t module_count = static_cast<size_t>(Module::count);
const char* module_name(Module module);  // "q_proj"
std::optional<Module> module_from_name(const std::string& name);
std::string module_path(Module module);  // "self_attn.q_proj" / "mlp.gate_proj"
uint64_t module_in_features(const ModelShape& shape, Module module);
uint64_t module_out_features(const ModelShape& shape, Module module);

// Fused projections (ModelShape::fused_projections). vktune keeps the seven modules (a fused weight
// is split into its row blocks on load); the fused LoRA is the owner module's: one A (r, hidden)
// shared by the pieces and one B whose row blocks are the pieces' B. Unfused, every module owns itself.
Module fused_owner(const ModelShape& shape, Module module);           // k_proj, v_proj -> q_proj; up_proj -> gate_proj
uint64_t fused_row_offset(const ModelShape& shape, Module module);    // first row of the module in the owner's weight
uint64_t fused_out_features(const ModelShape& shape, Module module);  // rows of the owner's (fused) weight and B
// The name on disk and in PEFT: "qkv_proj" / "gate_up_proj" for the pieces of a fused module.
const char* stored_module_name(const ModelShape& shape, Module module);
std::string stored_module_path(const ModelShape& shape, Module module);  // "self_attn.qkv_proj"

}  // namespace vkt::spec
