#pragma once
// The memory plan: every buffer a training run (or generation) allocates, with its size,
// category and memory kind. This is the ONE source of truth for sizes: the model allocates
// exactly the buffers listed here (looking them up by name), and `vktune plan` prints their sums.
// Plan and memory ledger can therefore differ only by alignment and driver overhead.
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/base/names.hpp"
#include "engine/kernels/types.hpp"
#include "engine/vk/memory.hpp"

namespace vkt::plan {

using kernels::DType;
using kernels::WeightFormat;

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
  bool qkv_bias = false;      // Qwen2
};

// The seven linear modules of a layer, in PEFT's names.
enum class Module : uint8_t { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, count };
constexpr size_t module_count = static_cast<size_t>(Module::count);
const char* module_name(Module module);                 // "q_proj"
std::optional<Module> module_from_name(const std::string& name);
std::string module_path(Module module);                 // "self_attn.q_proj" / "mlp.gate_proj"
uint64_t module_in_features(const ModelShape& shape, Module module);
uint64_t module_out_features(const ModelShape& shape, Module module);

enum class Method : uint8_t { lora, qlora, full };
enum class Optimizer : uint8_t { adamw, sgd, momentum };
std::span<const NameEntry<Method>> method_names();        // the --method names: lora, qlora, full
std::span<const NameEntry<Optimizer>> optimizer_names();  // the --optim names: adamw, sgd, momentum
const char* method_name(Method method);
const char* optimizer_name(Optimizer optimizer);
uint32_t optimizer_states_per_parameter(Optimizer optimizer);  // adamw 2, momentum 1, sgd 0

// What a run does, as far as memory is concerned (a subset of the trainer's flags).
struct RunSettings {
  Method method = Method::lora;
  WeightFormat base_format = WeightFormat::f32;  // format of the frozen linear weights
  bool double_quant = true;                      // nf4 only
  uint32_t quant_block = 64;
  DType dtype = DType::f32;                      // embeddings, lm_head, dense base weights
  uint32_t lora_r = 8;
  std::vector<Module> target_modules = {Module::q_proj, Module::v_proj};
  uint64_t batch = 1;                            // per-device micro-batch
  uint64_t seq_len = 512;                        // max length
  bool gradient_checkpointing = false;
  Optimizer optimizer = Optimizer::adamw;
  bool offload_optimizer = false;
  float lora_dropout = 0;
  bool training = true;                          // false: inference/generation only
  uint64_t kv_cache_tokens = 0;                  // generation: cache length per sequence (0: none)
  bool with_adapter = false;                     // inference with LoRA weights (no gradients)
  uint64_t logits_chunk_bytes = 64ull << 20;     // cross-entropy works on row chunks of at most this
};

struct BufferSpec {
  std::string name;  // e.g. "model.layers.3.self_attn.q_proj.lora_A", "act.layers.3.q"
  vk::Category category;
  vk::MemoryKind kind = vk::MemoryKind::device;
  uint64_t bytes = 0;
  // Sized here but allocated by the code that owns it (the optimizer's tensor table): the
  // model's BufferSet skips it. (The partial sums depend on the device's chunk size; the plan
  // uses the GPU default, an upper bound.)
  bool external = false;
};

// Parameter counts by module family, as the seeds count them.
struct ParameterCounts {
  uint64_t embedding = 0, attention = 0, mlp = 0, norms = 0, lm_head = 0, biases = 0;
  uint64_t total = 0;
  uint64_t trainable = 0;  // adapter parameters (LoRA) or all (full)
};

struct MemoryPlan {
  ModelShape shape;
  RunSettings settings;
  ParameterCounts parameters;
  std::vector<BufferSpec> buffers;
  uint64_t logits_chunk_rows = 0;  // rows of logits computed at once

  // Bytes per (category, kind) and in total.
  uint64_t bytes(vk::Category category) const;
  uint64_t bytes(vk::Category category, vk::MemoryKind kind) const;
  uint64_t total_bytes() const;
  uint64_t device_bytes() const;  // everything but offloaded memory
  const BufferSpec& find(const std::string& name) const;  // VKT_ASSERT when absent
  bool contains(const std::string& name) const;
};

MemoryPlan make_plan(const ModelShape& shape, const RunSettings& settings);

// Activation bytes per layer saved for backward (what checkpointing avoids) and the one
// recompute set that checkpointing needs instead.
uint64_t saved_activation_bytes_per_layer(const ModelShape& shape, const RunSettings& settings);

// Bytes of one stored weight of `elements` values in `format` (codes plus statistics).
uint64_t weight_bytes(uint64_t elements, WeightFormat format, uint32_t block, bool double_quant);

// The seeds' rules of thumb (Chip Huyen, AI Engineering, ch. 7):
//   inference memory ≈ N × M × 1.2 (N parameters, M bytes each, 20% for activations and KV cache);
//   training memory = weights + activations + gradients + optimizer states; with Adam, each
//   trainable parameter has a gradient and 2 states, at M bytes each.
struct RulesOfThumb {
  double weights_bytes = 0;          // N × M
  double inference_bytes = 0;        // N × M × 1.2
  double gradients_and_states = 0;   // trainable × (1 + states) × M
};
RulesOfThumb rules_of_thumb(double parameters, double bytes_per_value, double trainable_parameters,
                            uint32_t optimizer_states);

// Verdict against a device budget, with advice in order of cost.
struct Verdict {
  bool fits = false;
  uint64_t required = 0, available = 0;
  int64_t headroom = 0;  // available - required (negative: missing)
  std::vector<std::string> advice;  // what to change, cheapest first, each with the bytes it saves
};
Verdict judge(const MemoryPlan& plan, uint64_t device_bytes);

}  // namespace vkt::plan
