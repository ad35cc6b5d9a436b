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

#include "engine/kernels/types.hpp"
#include "engine/spec/model_shape.hpp"
#include "engine/spec/run_settings.hpp"
#include "engine/vk/memory.hpp"

namespace vkt::plan {

using kernels::DType;
using kernels::WeightFormat;

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
  spec::ModelShape shape;
  spec::RunSettings settings;
  ParameterCounts parameters;
  std::vector<BufferSpec> buffers;
  uint64_t logits_chunk_rows = 0;  // rows of logits computed at once

  // Bytes per (category, kind) and in total.
  uint64_t bytes(vk::Category category) const;
  uint64_t bytes(vk::Category category, vk::MemoryKind kind) const;
  uint64_t total_bytes() const;
  uint64_t device_bytes() const;                          // everything but offloaded memory
  const BufferSpec& find(const std::string& name) const;  // VKT_ASSERT when absent
  bool contains(const std::string& name) const;
};

MemoryPlan make_plan(const spec::ModelShape& shape, const spec::RunSettings& settings);
// The shape HF gives the trainable tensor `name` of `elements` values (vktune stores it in that
// row-major layout): [r, in] for lora_A, [out, r] for lora_B, [out, in] for a linear weight,
// [vocab, hidden] for embed_tokens and lm_head, else 1-D. --optim adafactor factors the 2-D ones.
std::vector<uint64_t> hf_parameter_shape(const spec::ModelShape& shape, uint32_t lora_r, const std::string& name,
                                         uint64_t elements);

// Bytes of one stored activation or activation-gradient value: the run's activation_dtype (per-row
// statistics such as rstd and the attention's logsumexp stay fp32).
uint64_t activation_value_bytes(const spec::RunSettings& settings);

// Activation bytes per layer saved for backward (what checkpointing avoids) and the one
// recompute set that checkpointing needs instead.
uint64_t saved_activation_bytes_per_layer(const spec::ModelShape& shape, const spec::RunSettings& settings);

// Bytes of one stored weight of `elements` values in `format` (codes plus statistics).
uint64_t weight_bytes(uint64_t elements, WeightFormat format, uint32_t block, bool double_quant);

// The seeds' rules of thumb (Chip Huyen, AI Engineering, ch. 7):
//   inference memory ≈ N × M × 1.2 (N parameters, M bytes each, 20% for activations and KV cache);
//   training memory = weights + activations + gradients + optimizer states; with Adam, each
//   trainable parameter has a gradient and 2 states, at M bytes each.
struct RulesOfThumb {
  double weights_bytes = 0;         // N × M
  double inference_bytes = 0;       // N × M × 1.2
  double gradients_and_states = 0;  // trainable × (1 + states) × M
};
RulesOfThumb rules_of_thumb(double parameters, double bytes_per_value, double trainable_parameters,
                            uint32_t optimizer_states);

// Verdict against a device budget, with advice in order of cost.
struct Verdict {
  bool fits = false;
  uint64_t required = 0, available = 0;
  int64_t headroom = 0;             // available - required (negative: missing)
  std::vector<std::string> advice;  // what to change, cheapest first, each with the bytes it saves
};
Verdict judge(const MemoryPlan& plan, uint64_t device_bytes);

}  // namespace vkt::plan
