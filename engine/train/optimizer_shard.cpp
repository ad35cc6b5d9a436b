#include "engine/train/optimizer_shard.hpp"

#include <algorithm>

#include "engine/base/error.hpp"
#include "engine/train/distributed.hpp"

namespace vkt::train {

vk::BufferRange fp32_sub_range(const vk::BufferRange& range, uint64_t first, uint64_t count) {
  VKT_ASSERT((first + count) * 4 <= range.bytes, "sub-range past the end of its buffer range");
  return {range.buffer, range.offset + first * 4, count * 4, range.address + first * 4};
}

OptimizerShard::OptimizerShard(Communicator& ranks, std::vector<uint64_t> counts)
    : ranks_(ranks), counts_(std::move(counts)) {
  for (uint64_t count : counts_) {
    tensor_first_.push_back(total_);
    total_ += count;
  }
  const auto size = static_cast<uint64_t>(ranks_.size()), rank = static_cast<uint64_t>(ranks_.rank());
  for (uint64_t r = 0; r < size; r++)
    slice_counts_.push_back(static_cast<size_t>(slice_begin(total_, r + 1, size) - slice_begin(total_, r, size)));
  begin_ = slice_begin(total_, rank, size);
  end_ = slice_begin(total_, rank + 1, size);
  for (size_t i = 0; i < counts_.size(); i++) {
    const uint64_t first = std::max(begin_, tensor_first_[i]), last = std::min(end_, tensor_first_[i] + counts_[i]);
    if (first < last) pieces_.push_back({i, first - tensor_first_[i], last - first, first - begin_});
  }
}

std::vector<kernels::OptimizerTensor> OptimizerShard::tensors(const std::vector<kernels::OptimizerTensor>& full,
                                                              const vk::BufferRange& state0,
                                                              const vk::BufferRange& state1) const {
  std::vector<kernels::OptimizerTensor> sliced;
  for (const Piece& piece : pieces_) {
    kernels::OptimizerTensor tensor = full.at(piece.tensor);
    tensor.param = fp32_sub_range(tensor.param, piece.first, piece.count);
    tensor.grad = fp32_sub_range(tensor.grad, piece.first, piece.count);
    tensor.state0 = state0.bytes ? fp32_sub_range(state0, piece.shard_first, piece.count) : vk::BufferRange{};
    tensor.state1 = state1.bytes ? fp32_sub_range(state1, piece.shard_first, piece.count) : vk::BufferRange{};
    tensor.count = static_cast<uint32_t>(piece.count);
    sliced.push_back(tensor);
  }
  return sliced;
}

std::vector<float> OptimizerShard::gather(const std::vector<float>& mine) {
  all_.resize(total_);
  ranks_.all_gather(mine.data(), all_.data(), slice_counts_);
  return all_;
}

void OptimizerShard::all_gather_parameters(vk::Context& context, const std::vector<vk::BufferRange>& params) {
  mine_.resize(end_ - begin_);
  for (const Piece& piece : pieces_)
    context.download(fp32_sub_range(params.at(piece.tensor), piece.first, piece.count),
                     mine_.data() + piece.shard_first);
  all_.resize(total_);
  ranks_.all_gather(mine_.data(), all_.data(), slice_counts_);
  for (size_t i = 0; i < counts_.size(); i++) context.upload(params[i], all_.data() + tensor_first_[i]);
}

std::vector<std::vector<float>> OptimizerShard::gather_state(vk::Context& context, const vk::BufferRange& shard_state) {
  std::vector<float> mine(end_ - begin_);
  if (!mine.empty()) context.download(fp32_sub_range(shard_state, 0, mine.size()), mine.data());
  const std::vector<float> all = gather(mine);
  std::vector<std::vector<float>> per_tensor;
  for (size_t i = 0; i < counts_.size(); i++)
    per_tensor.emplace_back(all.begin() + static_cast<ptrdiff_t>(tensor_first_[i]),
                            all.begin() + static_cast<ptrdiff_t>(tensor_first_[i] + counts_[i]));
  return per_tensor;
}

void OptimizerShard::load_state(vk::Context& context, const vk::BufferRange& shard_state, size_t tensor,
                                const float* values) const {
  for (const Piece& piece : pieces_)
    if (piece.tensor == tensor)
      context.upload(fp32_sub_range(shard_state, piece.shard_first, piece.count), values + piece.first);
}

}  // namespace vkt::train
