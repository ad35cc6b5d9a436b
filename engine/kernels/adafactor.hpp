#pragma once
// Adafactor as HF's Trainer runs it for --optim adafactor (transformers 5.23's
// optimization.Adafactor with scale_parameter=False, relative_step=False, warmup_init=False,
// beta1=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8): no first moment; the
// second moment of a 2-D parameter (rows x cols, HF's shape) is factored into a row and a column
// accumulator, of a 1-D one kept whole. Per tensor, step t (beta2t = 1 - t^decay_rate):
//   G = g^2 + eps1
//   2-D: row = beta2t row + (1 - beta2t) mean_cols(G);  col = beta2t col + (1 - beta2t) mean_rows(G)
//        u = rsqrt(row / mean(row)) (outer) rsqrt(col) * g
//   1-D: v = beta2t v + (1 - beta2t) G;  u = rsqrt(v) * g
//   u = u / max(1, rms(u) / clip_threshold) * lr;   p += p * (-wd * lr);   p -= u
// (eps2 only matters with scale_parameter, which the Trainer turns off.)
// One workgroup per tensor (the row/column means and rms(u) are per-tensor reductions).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/kernels/optimizer.hpp"

namespace vkt::kernels {

struct AdafactorConfig {
  float eps1 = 1e-30f;  // added to g^2
  float clip_threshold = 1.0f;
  double decay_rate = -0.8;
  float weight_decay = 0;  // decoupled, times the tensor's decay_scale
};

// A tensor's factoring: rows x cols with cols > 0 for a 2-D parameter (state0 = row accumulator,
// (rows) fp32; state1 = column accumulator, (cols) fp32); cols 0 for a 1-D one (state0 = (count) fp32).
struct AdafactorShape {
  uint32_t rows = 0, cols = 0;
};
// Bytes of the two states of a tensor of `count` elements shaped `shape`.
uint64_t adafactor_state0_bytes(uint64_t count, AdafactorShape shape);
uint64_t adafactor_state1_bytes(AdafactorShape shape);
// One workgroup walks a whole tensor, and lavapipe's loop limit bounds its iterations per thread:
// a UserError naming `tensor` (and the way out) when `count` elements of `shape` are too many.
void check_adafactor_fits(const std::string& tensor, uint32_t count, AdafactorShape shape);

// Sets step, learning_rate and beta2t = 1 - step^decay_rate (adam_step_size) and 1 - beta2t
// (adam_bias_correction2_sqrt), in double as Python computes them, then rounded.
void set_adafactor_step(StepState& state, uint32_t step, double learning_rate, const AdafactorConfig& config);

// The states of one tensor of the list (the list's own entries carry no states: Adafactor's are
// smaller than the tensor).
struct AdafactorTensor {
  BufferRange state0, state1;  // state1 empty when unfactored
  AdafactorShape shape;
};
// The device table of the list's Adafactor states, in the list's order (built once, like the list).
class AdafactorTable {
 public:
  // Table entry, std430 (shaders/adafactor.comp declares the same struct). 24 bytes.
  struct Entry {
    uint64_t state0, state1;
    uint32_t rows, cols;
  };
  static_assert(sizeof(Entry) == 24, "AdafactorTable::Entry must match shaders/adafactor.comp");
  AdafactorTable(vk::Context& context, const std::vector<AdafactorTensor>& tensors);
  static uint64_t table_bytes(uint32_t tensor_count) { return uint64_t{tensor_count} * sizeof(Entry); }
  BufferRange table() const { return table_.range(); }
  const std::vector<BufferRange>& states() const { return states_; }
  size_t size() const { return tensors_.size(); }
  const std::vector<AdafactorTensor>& tensors() const { return tensors_; }

 private:
  std::vector<AdafactorTensor> tensors_;
  std::vector<BufferRange> states_;
  vk::Buffer table_;
};

// One Adafactor step over every tensor of the list; nothing when StepState.flags has a
// step_flag_non_finite bit. The gradient used is g * grad_scale * clip_coefficient.
void adafactor(Recorder& recorder, const TensorList& list, const AdafactorTable& states, const BufferRange& step_state,
               const AdafactorConfig& config);

}  // namespace vkt::kernels

namespace vkt::ref {
// One step of one tensor, in double from the fp32 inputs, stored as fp32. lr: already times the
// tensor's lr_scale; config.weight_decay already times its decay_scale.
void adafactor(float* param, const float* grad, float* state0, float* state1, size_t n, kernels::AdafactorShape shape,
               uint32_t step, double lr, const kernels::AdafactorConfig& config, float grad_multiplier = 1.0f);
}  // namespace vkt::ref
