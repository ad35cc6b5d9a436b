#include "engine/train/optimizer_shard.hpp"

#include <algorithm>

#include "engine/base/error.hpp"
#include "engine/kernels/optimizer_8bit.hpp"
#include "engine/train/distributed.hpp"

namespace vkt::train {

vk::BufferRange fp32_sub_range(const vk::BufferRange& range, uint64_t first, uint64_t count) {
  VKT_ASSERT((first + count) * 4 <= range.bytes, "sub-range past the end of its buffer range");
  return {range.buffer, range.offset + first * 4, count * 4, range.address + first * 4};
}

namespace {
// `bytes` bytes of `range` from byte `offset`.
vk::BufferRange byte_sub_range(const vk::BufferRange& range, uint64_t offset, uint64_t bytes) {
  VKT_ASSERT(offset + bytes <= range.bytes, "sub-range past the end of its buffer range");
  return {range.buffer, range.offset + offset, bytes, range.address + offset};
}
}  // namespace

OptimizerShard::OptimizerShard(Communicator& ranks, std::vector<uint64_t> counts, bool blockwise_8bit)
    : ranks_(ranks), counts_(std::move(counts)), blockwise_8bit_(blockwise_8bit) {
  for (uint64_t count : counts_) {
    tensor_first_.push_back(total_);
    total_ += count;
  }
  const auto size = static_cast<uint32_t>(ranks_.size()), rank = static_cast<uint32_t>(ranks_.rank());
  bounds_ = plan::optimizer_shard_bounds(counts_, size, blockwise_8bit_);
  for (uint32_t r = 0; r < size; r++) {
    slice_counts_.push_back(static_cast<size_t>(bounds_[r + 1] - bounds_[r]));
    uint64_t bytes = 0;
    for (const Piece& piece : plan::optimizer_shard_pieces(counts_, bounds_, r, blockwise_8bit_))
      bytes += piece.state_bytes;
    state_words_.push_back(static_cast<size_t>(bytes / 4));
  }
  begin_ = bounds_[rank];
  end_ = bounds_[rank + 1];
  for (uint32_t r = 0; r < size; r++)
    rank_pieces_.push_back(plan::optimizer_shard_pieces(counts_, bounds_, r, blockwise_8bit_));
  pieces_ = rank_pieces_[rank];
}

std::vector<kernels::OptimizerTensor> OptimizerShard::tensors(const std::vector<kernels::OptimizerTensor>& full,
                                                              const vk::BufferRange& state0,
                                                              const vk::BufferRange& state1) const {
  std::vector<kernels::OptimizerTensor> sliced;
  for (const Piece& piece : pieces_) {
    kernels::OptimizerTensor tensor = full.at(piece.tensor);
    const bool sixteen_bit = tensor.param.bytes < counts_[piece.tensor] * 4;  // updated through its masters
    VKT_ASSERT(!sixteen_bit || masters_.bytes, "--shard-optimizer: a 16-bit weight without the slice's masters");
    tensor.param = sixteen_bit ? fp32_sub_range(masters_, slice_offset(piece), piece.count)
                               : fp32_sub_range(tensor.param, piece.first, piece.count);
    tensor.grad = fp32_sub_range(tensor.grad, piece.first, piece.count);
    tensor.state0 = state0.bytes ? byte_sub_range(state0, piece.state_offset, piece.state_bytes) : vk::BufferRange{};
    tensor.state1 = state1.bytes ? byte_sub_range(state1, piece.state_offset, piece.state_bytes) : vk::BufferRange{};
    tensor.count = static_cast<uint32_t>(piece.count);
    tensor.states_8bit = piece.packed;
    sliced.push_back(tensor);
  }
  return sliced;
}

void OptimizerShard::all_gather_parameters(vk::Context& context, const std::vector<vk::BufferRange>& params) {
  // Each slice as the weights' own bytes (4 or 2 per element), moved as 4-byte words (copied, not summed).
  auto element_bytes = [&](size_t tensor) { return params.at(tensor).bytes / counts_[tensor]; };
  std::vector<size_t> words;
  for (const std::vector<Piece>& pieces : rank_pieces_) {
    uint64_t bytes = 0;
    for (const Piece& piece : pieces) bytes += piece.count * element_bytes(piece.tensor);
    words.push_back(static_cast<size_t>((bytes + 3) / 4));
  }
  mine_.assign(words[static_cast<size_t>(ranks_.rank())], 0);
  auto* mine = reinterpret_cast<uint8_t*>(mine_.data());
  for (const Piece& piece : pieces_) {
    const uint64_t size = element_bytes(piece.tensor);
    context.download(byte_sub_range(params[piece.tensor], piece.first * size, piece.count * size), mine);
    mine += piece.count * size;
  }
  size_t total_words = 0;
  for (size_t w : words) total_words += w;
  all_.resize(total_words);
  ranks_.all_gather(reinterpret_cast<const float*>(mine_.data()), reinterpret_cast<float*>(all_.data()), words);
  std::vector<std::vector<uint8_t>> whole(counts_.size());
  for (size_t i = 0; i < counts_.size(); i++) whole[i].resize(params[i].bytes);
  const auto* slice = reinterpret_cast<const uint8_t*>(all_.data());
  for (size_t r = 0; r < rank_pieces_.size(); slice += words[r] * 4, r++) {
    const uint8_t* part = slice;
    for (const Piece& piece : rank_pieces_[r]) {
      const uint64_t size = element_bytes(piece.tensor);
      std::copy_n(part, piece.count * size, whole[piece.tensor].data() + piece.first * size);
      part += piece.count * size;
    }
  }
  for (size_t i = 0; i < counts_.size(); i++) context.upload(params[i], whole[i].data());
}

std::vector<kernels::MasterCopy> OptimizerShard::master_copies(const std::vector<vk::BufferRange>& weights) const {
  std::vector<kernels::MasterCopy> copies;
  for (const Piece& piece : pieces_)
    if (weights.at(piece.tensor).bytes < counts_[piece.tensor] * 4)  // a 16-bit weight: 2 bytes per element
      copies.push_back({fp32_sub_range(masters_, slice_offset(piece), piece.count),
                        byte_sub_range(weights[piece.tensor], piece.first * 2, piece.count * 2),
                        static_cast<uint32_t>(piece.count)});
  return copies;
}

std::vector<std::vector<float>> OptimizerShard::gather_masters(vk::Context& context) {
  std::vector<float> mine(end_ - begin_), all(total_);
  if (!mine.empty()) context.download(fp32_sub_range(masters_, 0, mine.size()), mine.data());
  ranks_.all_gather(mine.data(), all.data(), slice_counts_);
  std::vector<std::vector<float>> per_tensor;
  for (size_t i = 0; i < counts_.size(); i++)
    per_tensor.emplace_back(all.begin() + static_cast<ptrdiff_t>(tensor_first_[i]),
                            all.begin() + static_cast<ptrdiff_t>(tensor_first_[i] + counts_[i]));
  return per_tensor;
}

void OptimizerShard::load_masters(vk::Context& context, size_t tensor, const float* values) const {
  for (const Piece& piece : pieces_)
    if (piece.tensor == tensor)
      context.upload(fp32_sub_range(masters_, slice_offset(piece), piece.count), values + piece.first);
}

std::vector<std::vector<float>> OptimizerShard::gather_state(vk::Context& context, const vk::BufferRange& shard_state) {
  // Every slice's state words (8-bit codes and absmax moved as 4-byte words, copied, not summed).
  const size_t rank_count = state_words_.size();
  std::vector<float> mine(state_words_[static_cast<size_t>(ranks_.rank())]);
  if (!mine.empty()) context.download(byte_sub_range(shard_state, 0, mine.size() * 4), mine.data());
  size_t words = 0;
  for (size_t w : state_words_) words += w;
  std::vector<float> all(words);
  ranks_.all_gather(mine.data(), all.data(), state_words_);
  std::vector<std::vector<float>> per_tensor(counts_.size());
  for (size_t i = 0; i < counts_.size(); i++) {
    const bool packed = blockwise_8bit_ && counts_[i] >= kernels::blockwise_8bit_min_elements;
    per_tensor[i].assign(packed ? kernels::adamw_8bit_state_bytes(counts_[i]) / 4 : counts_[i], 0.0f);
  }
  const float* slice = all.data();
  for (size_t r = 0; r < rank_count; slice += state_words_[r], r++)
    for (const Piece& piece :
         plan::optimizer_shard_pieces(counts_, bounds_, static_cast<uint32_t>(r), blockwise_8bit_)) {
      auto* whole = reinterpret_cast<uint8_t*>(per_tensor[piece.tensor].data());
      const auto* part = reinterpret_cast<const uint8_t*>(slice) + piece.state_offset;
      if (!piece.packed) {
        std::copy_n(part, piece.count * 4, whole + piece.first * 4);
        continue;
      }
      // codes: one byte per element; absmax: one fp32 per block (piece.first is a block's start)
      const uint64_t count = counts_[piece.tensor];
      std::copy_n(part, piece.count, whole + piece.first);
      std::copy_n(
          part + kernels::blockwise_8bit_absmax_offset(piece.count),
          4 * ((piece.count + kernels::blockwise_8bit_block - 1) / kernels::blockwise_8bit_block),
          whole + kernels::blockwise_8bit_absmax_offset(count) + 4 * (piece.first / kernels::blockwise_8bit_block));
    }
  return per_tensor;
}

void OptimizerShard::load_state(vk::Context& context, const vk::BufferRange& shard_state, size_t tensor,
                                const float* values) const {
  const auto* whole = reinterpret_cast<const uint8_t*>(values);
  for (const Piece& piece : pieces_) {
    if (piece.tensor != tensor) continue;
    if (!piece.packed) {
      context.upload(byte_sub_range(shard_state, piece.state_offset, piece.count * 4), whole + piece.first * 4);
      continue;
    }
    // The part's own layout: its codes (padded to 4 bytes), then its blocks' absmax.
    std::vector<uint8_t> part(piece.state_bytes, 0);
    std::copy_n(whole + piece.first, piece.count, part.data());
    std::copy_n(whole + kernels::blockwise_8bit_absmax_offset(counts_[tensor]) +
                    4 * (piece.first / kernels::blockwise_8bit_block),
                4 * ((piece.count + kernels::blockwise_8bit_block - 1) / kernels::blockwise_8bit_block),
                part.data() + kernels::blockwise_8bit_absmax_offset(piece.count));
    context.upload(byte_sub_range(shard_state, piece.state_offset, part.size()), part.data());
  }
}

}  // namespace vkt::train
