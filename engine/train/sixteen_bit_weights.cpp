#include "engine/train/sixteen_bit_weights.hpp"

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"

namespace vkt::train {

using kernels::DType;

SixteenBitWeights::SixteenBitWeights(const model::ModelSession& session)
    : session_(session),
      weight_type_(session.plan.settings.method == spec::Method::full ? session.plan.settings.dtype : DType::f32) {}

void SixteenBitWeights::route(kernels::OptimizerTensor& tensor, const std::string& name) {
  const auto& buffers = *session_.buffers;
  tensor.count = static_cast<uint32_t>(buffers.range("grad." + name).bytes / 4);  // gradients are fp32
  tensor.param = buffers.range(name);
  if (weight_type_ == DType::f32 || tensor.param.bytes >= uint64_t(tensor.count) * 4) return;  // an fp32 tensor
  if (buffers.has("master." + name)) {
    tensor.param = buffers.range("master." + name);
    copies_.push_back({tensor.param, buffers.range(name), tensor.count});
  } else {
    VKT_ASSERT(session_.plan.settings.pure_bf16 && weight_type_ == DType::bf16,
               name + ": 16-bit weight without master");
    tensor.param_bf16 = true;
  }
}

void SixteenBitWeights::finish(vk::Context& context, const std::vector<kernels::OptimizerTensor>& tensors) {
  if (!session_.plan.settings.pure_bf16) return;
  std::vector<kernels::OptimizerTensor> rounded, plain;
  for (const kernels::OptimizerTensor& tensor : tensors) (tensor.param_bf16 ? rounded : plain).push_back(tensor);
  VKT_ASSERT(!rounded.empty(), "--pure-bf16 with no bf16 weight");
  rounded_ = std::make_unique<kernels::TensorList>(context, rounded, 0, "tensor_list.bf16");
  if (!plain.empty()) plain_ = std::make_unique<kernels::TensorList>(context, plain, 0, "tensor_list.fp32");
}

void SixteenBitWeights::record_adamw(vk::Recorder& r, const vk::BufferRange& step_state,
                                     const kernels::AdamWConfig& config) const {
  kernels::adamw_bf16_sr(r, *rounded_, step_state, config);
  if (plain_) kernels::adamw(r, *plain_, step_state, config);
}

void SixteenBitWeights::record_copies(vk::Recorder& r) const { kernels::copy_masters(r, copies_, weight_type_); }

std::vector<float> SixteenBitWeights::download(vk::Context& context, const std::string& name) const {
  const auto& buffers = *session_.buffers;
  const uint64_t count = buffers.range("grad." + name).bytes / 4;
  std::vector<float> values(count);
  if (buffers.has("master." + name) || buffers.range(name).bytes >= count * 4) {
    context.download(buffers.buffer(buffers.has("master." + name) ? "master." + name : name), values.data(), 0,
                     count * 4);
    return values;
  }
  std::vector<uint16_t> bits(count);
  context.download(buffers.buffer(name), bits.data(), 0, count * 2);
  for (uint64_t i = 0; i < count; i++)
    values[i] = weight_type_ == DType::f16 ? half_to_float(bits[i]) : bf16_to_float(bits[i]);
  return values;
}

void SixteenBitWeights::upload(vk::Context& context, const std::string& name, const std::vector<float>& values) const {
  const auto& buffers = *session_.buffers;
  if (buffers.range(name).bytes >= values.size() * 4) {
    context.upload(buffers.buffer(name), values.data(), 0, values.size() * 4);
    return;
  }
  if (buffers.has("master." + name))
    context.upload(buffers.buffer("master." + name), values.data(), 0, values.size() * 4);
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); i++)
    bits[i] = weight_type_ == DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
  context.upload(buffers.buffer(name), bits.data(), 0, bits.size() * 2);
}

}  // namespace vkt::train
