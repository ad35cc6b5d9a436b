#pragma once
// Element-wise model merging (engine/merge runs mergekit's methods with these): a weighted sum
// (linear, slerp's combination, passthrough's scale), mergekit's generalized task arithmetic
// (task_arithmetic, ties, dare_linear, dare_ties) and the sums slerp needs. All values fp32; a
// tensor is processed in chunks, so every kernel takes the chunk's offset in the whole tensor
// where results depend on it (random masks, tie order).
//
// Generalized task arithmetic (mergekit/merge_methods/generalized_task_arithmetic.py, GTATask,
// with mergekit/sparsify.py), per element, for the models j that are not the base:
//   δ_j  = θ_j − θ_base
//   sparsify (only when density_j < 1):
//     magnitude (ties): keep the k = int(density_j · n) largest |δ_j| of the whole tensor
//       (mergekit: argsort(|δ|, descending)[:k]). The host finds the k-th largest magnitude
//       (threshold_j) and, among elements equal to it, keeps those with the smallest indices
//       (tie_cutoff_j: an element equal to the threshold is kept iff its index < tie_cutoff_j);
//       mergekit's argsort leaves ties in an unspecified order, this makes it deterministic.
//     random (dare): keep with probability density_j, kept values × keep_scale_j (1/density_j:
//       the DARE paper's rescale, mergekit before 2025-02; newer mergekit matches the L1 norm
//       instead, whose expectation is the same). The draw of element i is
//       uniform(seed, random::stream_dare, model_key_j, tensor_key, i) < density_j
//       (engine/kernels/random.hpp: Philox4x32-10), reproducible on every device.
//   w_j δ_j are the weighted task vectors;
//   consensus (ties, dare_ties; mergekit get_mask(method="sum")):
//     majority = +1 if Σ_j w_j δ_j >= 0 else −1; agree_j = sign(w_j δ_j) == majority
//     (a zero never agrees); mixed = Σ_j agree_j w_j δ_j; divisor = Σ_j agree_j w_j (0 -> 1)
//   no consensus: mixed = Σ_j w_j δ_j; divisor = Σ_j w_j (|Σ| < 1e-8 -> 1), given by the host
//   θ = θ_base + λ · (normalize ? mixed / divisor : mixed)
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

enum class Sparsify : uint32_t { none = 0, magnitude = 1, random = 2 };

// One model's parameters for merge_task_arithmetic, as the shader reads them (8 words).
struct MergeModelParams {
  float weight = 1;         // w_j
  float density = 1;        // random: keep probability
  float threshold = 0;      // magnitude: the k-th largest |δ_j|
  uint32_t tie_cutoff = 0;  // magnitude: elements equal to the threshold with index < this are kept
  float keep_scale = 1;     // random: multiplier of kept values (1/density with rescale)
  uint32_t model_key = 0;   // random: the stream's step word (the model's position)
  uint32_t padding[2] = {0, 0};
};
static_assert(sizeof(MergeModelParams) == 32, "8 words, as shaders/merge_task_arithmetic.comp reads them");

struct TaskArithmeticSettings {
  Sparsify sparsify = Sparsify::none;
  bool consensus = false;  // TIES sign election
  bool normalize = false;
  float lambda = 1;
  float divisor = 1;        // without consensus: Σ w_j (1 when |Σ| < 1e-8); ignored with consensus
  uint32_t seed = 0;        // random: seed word
  uint32_t tensor_key = 0;  // random: identifies the tensor (a hash of its name)
};

// out = (Σ_j coefficients[j] · stack[j, :n]) / divisor.
// stack: (count, stride) fp32; coefficients: (count) fp32 (device memory); out: (n) fp32.
void merge_linear(Recorder& recorder, const BufferRange& stack, const BufferRange& coefficients, const BufferRange& out,
                  uint32_t n, uint32_t count, uint32_t stride, float divisor = 1.0f);

// Generalized task arithmetic of one chunk (the formulas above).
// stack: (count, stride) fp32, the non-base models; base: (n) fp32; params: (count)
// MergeModelParams; out: (n) fp32. first_index: the chunk's first element in the whole tensor,
// a multiple of 4.
void merge_task_arithmetic(Recorder& recorder, const BufferRange& stack, const BufferRange& base,
                           const BufferRange& params, const BufferRange& out, uint32_t n, uint32_t count,
                           uint32_t stride, uint32_t first_index, const TaskArithmeticSettings& settings);

// Partial sums for slerp: partials (3 · merge_dot_groups(n)) fp32, group g holding
// (Σ a², Σ b², Σ a·b) over elements [4096 g, 4096 (g + 1)). a, b: (n) fp32.
void merge_dot(Recorder& recorder, const BufferRange& a, const BufferRange& b, const BufferRange& partials, uint32_t n);
uint32_t merge_dot_groups(uint32_t n);

// The magnitude cut of mergekit's `magnitude` sparsification: keep the k largest of n magnitudes
// (|δ_i| = magnitude_of(i), fp32). Returns the k-th largest value and the tie cutoff (see above).
// 1 <= k <= n. Holds one scratch copy of the n magnitudes (the selection reorders it).
struct MagnitudeCut {
  float threshold = 0;
  uint32_t tie_cutoff = 0;
};
MagnitudeCut magnitude_cut(const std::function<float(uint64_t)>& magnitude_of, uint64_t n, uint64_t k);
MagnitudeCut magnitude_cut(const std::vector<float>& magnitudes, uint64_t k);

// mergekit's k for a density: int(density · n); density >= 1 keeps everything.
uint64_t magnitude_keep_count(double density, uint64_t n);

// FNV-1a (32-bit) of a tensor name: the DARE stream's tensor key.
uint32_t tensor_key(const std::string& name);

}  // namespace vkt::kernels

namespace vkt::ref {
// fp32 in the shaders' operation order (products rounded before adds).
void merge_linear(const float* stack, const float* coefficients, float* out, uint32_t n, uint32_t count,
                  uint32_t stride, float divisor = 1.0f);
void merge_task_arithmetic(const float* stack, const float* base, const kernels::MergeModelParams* params, float* out,
                           uint32_t n, uint32_t count, uint32_t stride, uint32_t first_index,
                           const kernels::TaskArithmeticSettings& settings);
// (Σ a², Σ b², Σ a·b) in double.
void merge_dot(const float* a, const float* b, uint32_t n, double sums[3]);
}  // namespace vkt::ref
