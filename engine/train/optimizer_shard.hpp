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
// adamw_8bit's blockwise states: the slices end on whole 256-element blocks and keep every part of
// a tensor at least 4096 elements (plan::optimizer_shard_bounds), so each part is quantized in the
// same blocks, with the same 8-bit kernel path, as the whole tensor: bit-identical again.
// Checkpoints gather the states to full per-tensor tensors (the unsharded file format; 8-bit
// states as the unsharded tensor's codes + absmax bytes).
#include <cstdint>
#include <vector>

#include "engine/kernels/optimizer.hpp"
#include "engine/kernels/optimizer_bf16.hpp"
#include "engine/plan/data_parallel.hpp"
#include "engine/vk/context.hpp"

namespace vkt::train {

class Communicator;

class OptimizerShard {
 public:
  // One tensor's part of this rank's slice (its state at state_offset of the shard buffers).
  using Piece = plan::ShardPiece;
  // counts: (tensors) elements of each trainable tensor, in optimizer order; blockwise_8bit:
  // adamw_8bit (tensors of at least 4096 elements keep 8-bit states).
  OptimizerShard(Communicator& ranks, std::vector<uint64_t> counts, bool blockwise_8bit = false);

  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  const std::vector<Piece>& pieces() const { return pieces_; }

  // The update's tensors: each piece's parameter and gradient sub-ranges of `full` (the whole
  // list, optimizer order), states at their place in `state0` / `state1` (the shard buffers;
  // empty ranges when the optimizer has none).
  std::vector<kernels::OptimizerTensor> tensors(const std::vector<kernels::OptimizerTensor>& full,
                                                const vk::BufferRange& state0, const vk::BufferRange& state1) const;
  // After the update: every rank's updated slice to every rank (params: (tensors) the weights as
  // stored, fp32 or 16-bit: a 16-bit full finetune gathers its 16-bit weights, not the masters).
  void all_gather_parameters(vk::Context& context, const std::vector<vk::BufferRange>& params);

  // 16-bit full finetuning (the plan's "master.shard", set before tensors()): this slice's fp32
  // masters, element e of the slice at element e of `masters`. tensors() updates a 16-bit tensor's
  // pieces there; master_copies() then writes them into its 16-bit weight (weights: (tensors) as stored).
  void set_masters(const vk::BufferRange& masters) { masters_ = masters; }
  std::vector<kernels::MasterCopy> master_copies(const std::vector<vk::BufferRange>& weights) const;
  // Where `piece` starts in the slice (elements): its masters' place.
  uint64_t slice_offset(const Piece& piece) const { return tensor_first_[piece.tensor] + piece.first - begin_; }
  // Checkpoints (collective): every tensor's masters as full fp32 values, every rank (the 16-bit
  // tensors' only are meaningful). Resume: this rank's part of tensor `tensor`'s masters `values`.
  std::vector<std::vector<float>> gather_masters(vk::Context& context);
  void load_masters(vk::Context& context, size_t tensor, const float* values) const;
  // Checkpoints (collective): the state in `shard_state` as full per-tensor values, every rank
  // (a packed tensor's: its whole 8-bit layout's bytes, as 4-byte words).
  std::vector<std::vector<float>> gather_state(vk::Context& context, const vk::BufferRange& shard_state);
  // Resume: uploads this rank's part of tensor `tensor`'s full state `values` (as gather_state
  // returns it) into `shard_state`.
  void load_state(vk::Context& context, const vk::BufferRange& shard_state, size_t tensor, const float* values) const;

 private:
  Communicator& ranks_;
  std::vector<uint64_t> counts_, tensor_first_;  // (tensors) elements and flattened start of each
  bool blockwise_8bit_;
  std::vector<uint64_t> bounds_;      // (ranks + 1) slice boundaries
  std::vector<size_t> slice_counts_;  // (ranks) elements of each rank's slice
  std::vector<size_t> state_words_;   // (ranks) 4-byte words of one state of each rank's slice
  uint64_t total_ = 0, begin_ = 0, end_ = 0;
  std::vector<Piece> pieces_;
  std::vector<std::vector<Piece>> rank_pieces_;  // (ranks) every rank's pieces
  vk::BufferRange masters_;                      // "master.shard" (16-bit full finetuning), else empty
  std::vector<uint32_t> mine_, all_;             // host staging: this slice, every slice (4-byte words)
};

// The sub-range of `range` (fp32 elements) from element `first`, `count` elements long.
vk::BufferRange fp32_sub_range(const vk::BufferRange& range, uint64_t first, uint64_t count);

}  // namespace vkt::train
