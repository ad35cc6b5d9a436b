#pragma once
// The element-wise part of a merge on the Vulkan device: host tensors (fp32) go up in chunks of
// at most `chunk_elements`, the merge kernels (engine/kernels/merge.hpp) run on them, and each
// finished chunk comes back through a callback, so the device holds (inputs + 2) chunks and the
// host never holds the merged tensor as a whole.
//
// What stays on the CPU and why: the TIES magnitude cut (the k-th largest |θ − θ_base| of a whole
// tensor, with ties ordered by index) is a selection over the full tensor; nth_element does it in
// O(n) on data the host already has, where a device version would need a multi-pass radix select
// for work done once per tensor. The cut is two numbers per model handed to the shader. Slerp's
// angle (arccos of a dot product reduced on the device) is one scalar per tensor.
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/kernels/merge.hpp"
#include "engine/vk/context.hpp"

namespace vkt::merge {

// Receives consecutive pieces of the result: values[0..count) are elements [first, first + count).
using ChunkSink = std::function<void(const float* values, uint64_t first, uint64_t count)>;

class MergeDevice {
 public:
  MergeDevice(vk::Context& context, uint64_t chunk_elements = uint64_t{1} << 22);

  vk::Context& context() { return context_; }
  uint64_t chunk_elements() const { return chunk_; }

  // out = (Σ_j coefficients[j] · inputs[j]) / divisor, inputs: (n) fp32 each.
  void linear(const std::vector<const float*>& inputs, const std::vector<float>& coefficients, float divisor,
              uint64_t n, const ChunkSink& sink);

  // Σ a², Σ b², Σ a·b over a, b: (n) fp32 (device partial sums, added in double here).
  void dot_sums(const float* a, const float* b, uint64_t n, double sums[3]);

  // Generalized task arithmetic: base: (n) fp32; models: the non-base inputs, (n) fp32 each, with
  // their parameters (magnitude cuts already computed). See engine/kernels/merge.hpp.
  void task_arithmetic(const float* base, const std::vector<const float*>& models,
                       const std::vector<kernels::MergeModelParams>& params,
                       const kernels::TaskArithmeticSettings& settings, uint64_t n, const ChunkSink& sink);

 private:
  void reserve(uint32_t inputs, uint64_t elements);
  vk::Context& context_;
  uint64_t chunk_;
  uint32_t stack_inputs_ = 0;
  uint64_t stack_elements_ = 0;  // capacity per input (the stride)
  vk::Buffer stack_, base_, out_, params_, partials_;
};

}  // namespace vkt::merge
