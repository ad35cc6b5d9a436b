#include "engine/merge/device.hpp"

#include <algorithm>

#include "engine/base/error.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::merge {

MergeDevice::MergeDevice(vk::Context& context, uint64_t chunk_elements)
    : context_(context), chunk_(std::max<uint64_t>(4, chunk_elements / 4 * 4)) {}

void MergeDevice::reserve(uint32_t inputs, uint64_t elements) {
  uint64_t per_input = std::min(chunk_, (elements + 3) / 4 * 4);
  if (inputs <= stack_inputs_ && per_input <= stack_elements_) return;
  stack_inputs_ = std::max(stack_inputs_, inputs);
  stack_elements_ = std::max(stack_elements_, per_input);
  // Released first so the old and new buffers never coexist.
  stack_ = {};
  base_ = {};
  out_ = {};
  partials_ = {};
  stack_ = context_.allocate(uint64_t(stack_inputs_) * stack_elements_ * 4, vk::Category::workspace, "merge.stack");
  out_ = context_.allocate(stack_elements_ * 4, vk::Category::workspace, "merge.out");
  partials_ = context_.allocate(uint64_t(kernels::merge_dot_groups(static_cast<uint32_t>(stack_elements_))) * 12,
                                vk::Category::workspace, "merge.partials");
  params_ = context_.allocate(std::max<uint64_t>(1, stack_inputs_) * sizeof(kernels::MergeModelParams),
                              vk::Category::workspace, "merge.params");
}

void MergeDevice::linear(const std::vector<const float*>& inputs, const std::vector<float>& coefficients, float divisor,
                         uint64_t n, const ChunkSink& sink) {
  VKT_ASSERT(!inputs.empty() && inputs.size() == coefficients.size(), "merge linear: one coefficient per input");
  const auto count = static_cast<uint32_t>(inputs.size());
  reserve(count, n);
  context_.upload(params_.range(0, count * 4), coefficients.data());
  std::vector<float> result(std::min(n, stack_elements_));
  for (uint64_t first = 0; first < n; first += stack_elements_) {
    const uint64_t elements = std::min(stack_elements_, n - first);
    for (uint32_t j = 0; j < count; j++)
      context_.upload(stack_.range(uint64_t(j) * stack_elements_ * 4, elements * 4), inputs[j] + first);
    context_.run([&](vk::Recorder& r) {
      kernels::merge_linear(r, stack_.range(), params_.range(0, count * 4), out_.range(),
                            static_cast<uint32_t>(elements), count, static_cast<uint32_t>(stack_elements_), divisor);
    });
    context_.download(out_.range(0, elements * 4), result.data());
    sink(result.data(), first, elements);
  }
}

void MergeDevice::dot_sums(const float* a, const float* b, uint64_t n, double sums[3]) {
  reserve(2, n);
  sums[0] = sums[1] = sums[2] = 0;
  for (uint64_t first = 0; first < n; first += stack_elements_) {
    const uint64_t elements = std::min(stack_elements_, n - first);
    const uint64_t stride_bytes = stack_elements_ * 4;
    context_.upload(stack_.range(0, elements * 4), a + first);
    context_.upload(stack_.range(stride_bytes, elements * 4), b + first);
    const uint32_t groups = kernels::merge_dot_groups(static_cast<uint32_t>(elements));
    context_.run([&](vk::Recorder& r) {
      kernels::merge_dot(r, stack_.range(0, elements * 4), stack_.range(stride_bytes, elements * 4),
                         partials_.range(0, uint64_t(groups) * 12), static_cast<uint32_t>(elements));
    });
    std::vector<float> partials(uint64_t(groups) * 3);
    context_.download(partials_.range(0, partials.size() * 4), partials.data());
    for (uint32_t g = 0; g < groups; g++)
      for (int k = 0; k < 3; k++) sums[k] += partials[3 * g + k];
  }
}

void MergeDevice::task_arithmetic(const float* base, const std::vector<const float*>& models,
                                  const std::vector<kernels::MergeModelParams>& params,
                                  const kernels::TaskArithmeticSettings& settings, uint64_t n, const ChunkSink& sink) {
  VKT_ASSERT(!models.empty() && models.size() == params.size(), "merge task arithmetic: one parameter set per model");
  VKT_ASSERT(n <= 0xfffffff0ull, "merge task arithmetic: tensors up to 2^32 - 16 elements");
  const auto count = static_cast<uint32_t>(models.size());
  reserve(count, n);
  if (!base_.valid() || base_.size() < stack_elements_ * 4)  // only this method reads a base
    base_ = context_.allocate(stack_elements_ * 4, vk::Category::workspace, "merge.base");
  context_.upload(params_.range(0, count * sizeof(kernels::MergeModelParams)), params.data());
  std::vector<float> result(std::min(n, stack_elements_));
  for (uint64_t first = 0; first < n; first += stack_elements_) {
    const uint64_t elements = std::min(stack_elements_, n - first);
    for (uint32_t j = 0; j < count; j++)
      context_.upload(stack_.range(uint64_t(j) * stack_elements_ * 4, elements * 4), models[j] + first);
    context_.upload(base_.range(0, elements * 4), base + first);
    context_.run([&](vk::Recorder& r) {
      kernels::merge_task_arithmetic(r, stack_.range(), base_.range(), params_.range(0, count * 32), out_.range(),
                                     static_cast<uint32_t>(elements), count, static_cast<uint32_t>(stack_elements_),
                                     static_cast<uint32_t>(first), settings);
    });
    context_.download(out_.range(0, elements * 4), result.data());
    sink(result.data(), first, elements);
  }
}

}  // namespace vkt::merge
