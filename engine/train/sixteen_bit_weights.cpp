#include "engine/train/sixteen_bit_weights.hpp"

#include <algorithm>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/train/optimizer_shard.hpp"

namespace vkt::train {

using kernels::DType;

SixteenBitWeights::SixteenBitWeights(const model::ModelSession& session)
    : session_(session),
      weight_type_(session.plan.settings.method == spec::Method::full ? session.plan.settings.dtype : DType::f32) {}

void SixteenBitWeights::route(kernels::OptimizerTensor& tensor, const std::string& name) {
  const auto& buffers = *session_.buffers;
  tensor.count = static_cast<uint32_t>(buffers.range("grad." + name).bytes / 4);  // gradients are fp32
  tensor.param = buffers.range(name);
  names_.push_back(name);
  sixteen_bit_weight_.push_back(weight_type_ != DType::f32 && tensor.param.bytes < uint64_t(tensor.count) * 4);
  if (!sixteen_bit_weight_.back()) return;  // an fp32 tensor
  if (buffers.has("master.shard")) return;  // ZeRO-1: OptimizerShard::tensors points it at the slice's masters
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
  if (shard_) {
    const auto tensor = static_cast<size_t>(std::find(names_.begin(), names_.end(), name) - names_.begin());
    VKT_ASSERT(tensor < names_.size(), name + ": not a trained tensor");
    shard_->load_masters(context, tensor, values.data());
  }
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); i++)
    bits[i] = weight_type_ == DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
  context.upload(buffers.buffer(name), bits.data(), 0, bits.size() * 2);
}

void SixteenBitWeights::shard_masters(OptimizerShard& shard, const std::vector<kernels::OptimizerTensor>& tensors) {
  shard_ = &shard;
  shard.set_masters(session_.buffers->range("master.shard"));
  std::vector<vk::BufferRange> weights;
  for (const kernels::OptimizerTensor& tensor : tensors) weights.push_back(tensor.param);
  copies_ = shard.master_copies(weights);
}

void SixteenBitWeights::load_sharded_masters(vk::Context& context, const model::TensorSource& source) const {
  VKT_ASSERT(shard_, "load_sharded_masters without sharded masters");
  std::vector<float> rows;
  for (const OptimizerShard::Piece& piece : shard_->pieces()) {
    if (!sixteen_bit_weight_[piece.tensor]) continue;
    // The rows the piece touches, from the file, as fp32 (the loader's values for a master).
    const std::string& name = names_[piece.tensor];
    const uint64_t cols = source.shape(name).back(), first_row = piece.first / cols;
    const uint64_t last_row = (piece.first + piece.count + cols - 1) / cols;
    rows.resize((last_row - first_row) * cols);
    source.read_rows(name, first_row, cols, rows);
    const float* values = rows.data() + (piece.first - first_row * cols);
    context.upload(fp32_sub_range(session_.buffers->range("master.shard"), shard_->slice_offset(piece), piece.count),
                   values);
  }
}

std::vector<std::pair<std::string, std::vector<float>>> SixteenBitWeights::gather_sharded_masters(
    vk::Context& context) const {
  std::vector<std::vector<float>> masters = shard_->gather_masters(context);
  std::vector<std::pair<std::string, std::vector<float>>> named;
  for (size_t i = 0; i < names_.size(); i++)
    if (sixteen_bit_weight_[i]) named.emplace_back("master." + names_[i], std::move(masters[i]));
  return named;
}

}  // namespace vkt::train
