#pragma once
// ZeRO-1 (--shard-optimizer): under data parallelism every rank holds the whole model and the
// all-reduced gradients, but the optimizer states (AdamW's m and v, SGD's momentum) only of its
// slice of the trainable parameters. The slice is a contiguous range of the trainable tensors
// flattened in optimizer order, balanced by element count: rank r of N owns elements
// [total * r / N, total * (r + 1) / N). A slice may start or end inside a tensor: the pieces below
// address those sub-ranges. Each step the global gradient norm still runs over every gradient
// (clipping sees the full norm), each rank updates its slice, and the updated weights are
// all-gathered from host staging so every rank holds identical weights. The update of each
// element is the unsharded one, so a sharded run is bit-identical to the unsharded run.
// Checkpoints gather the states to full per-tensor tensors (the unsharded file format).
#include <cstdint>
#include <vector>

#include "engine/kernels/optimizer.hpp"
#include "engine/vk/context.hpp"

namespace vkt::train {

class Communicator;

class OptimizerShard {
 public:
  // One tensor's part of this rank's slice.
  struct Piece {
    size_t tensor = 0;         // index in optimizer order
    uint64_t first = 0;        // first element within the tensor
    uint64_t count = 0;        // elements
    uint64_t shard_first = 0;  // where it starts in the shard's state buffers
  };
  // counts: (tensors) elements of each trainable tensor, in optimizer order.
  OptimizerShard(Communicator& ranks, std::vector<uint64_t> counts);

  // [begin, end) of the flattened trainable elements that `rank` of `ranks` owns.
  static uint64_t slice_begin(uint64_t total, uint64_t rank, uint64_t ranks) { return total * rank / ranks; }
  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  const std::vector<Piece>& pieces() const { return pieces_; }

  // The update's tensors: each piece's parameter and gradient sub-ranges of `full` (the whole
  // list, optimizer order), states at their place in `state0` / `state1` (the shard buffers;
  // empty ranges when the optimizer has none).
  std::vector<kernels::OptimizerTensor> tensors(const std::vector<kernels::OptimizerTensor>& full,
                                                const vk::BufferRange& state0, const vk::BufferRange& state1) const;
  // After the update: every rank's updated slice to every rank (params: (tensors) fp32 ranges).
  void all_gather_parameters(vk::Context& context, const std::vector<vk::BufferRange>& params);
  // Checkpoints (collective): the state in `shard_state` as full per-tensor values, every rank.
  std::vector<std::vector<float>> gather_state(vk::Context& context, const vk::BufferRange& shard_state);
  // Resume: uploads this rank's part of tensor `tensor`'s full state `values` into `shard_state`.
  void load_state(vk::Context& context, const vk::BufferRange& shard_state, size_t tensor, const float* values) const;

 private:
  std::vector<float> gather(const std::vector<float>& mine);  // the flattened whole, every rank
  Communicator& ranks_;
  std::vector<uint64_t> counts_, tensor_first_;  // (tensors) elements and flattened start of each
  std::vector<size_t> slice_counts_;             // (ranks) elements of each rank's slice
  uint64_t total_ = 0, begin_ = 0, end_ = 0;
  std::vector<Piece> pieces_;
  std::vector<float> mine_, all_;  // host staging: this slice, the flattened whole
};

// The sub-range of `range` (fp32 elements) from element `first`, `count` elements long.
vk::BufferRange fp32_sub_range(const vk::BufferRange& range, uint64_t first, uint64_t count);

}  // namespace vkt::train
