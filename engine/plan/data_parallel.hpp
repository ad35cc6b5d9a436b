#pragma once
// What data parallelism (several ranks under mpirun) adds to a rank's plan.
#include <cstdint>
#include <vector>

#include "engine/plan/plan.hpp"
#include "engine/plan/report.hpp"

namespace vkt::plan {

// Adds "ddp.buckets": the host-visible staging in which train::GradientBuckets sums the gradient
// buckets over the ranks, every grad.* buffer plus loss.step (4 bytes), allocated by its owner.
// Nothing for one rank.
void add_data_parallel_staging(MemoryPlan& plan, uint32_t ranks);
// The same for `vktune plan --world-size N`: its three training plans (as run, with and without
// gradient checkpointing), so the table, the verdict and the JSON show one rank of N.
void add_data_parallel_staging(PlanReport& report, uint32_t ranks);

// ZeRO-1's slices (--shard-optimizer, train::OptimizerShard): rank r of N updates the flattened
// trainable elements [bounds[r], bounds[r + 1]) of tensors of `counts` elements (optimizer order),
// balanced by element count (total * r / N). With blockwise 8-bit states (adamw_8bit) a boundary
// inside a tensor of at least kernels::blockwise_8bit_min_elements falls on one of its 256-element
// blocks and leaves each part of it at least that long (else it moves to an edge of the part), so
// every part keeps its own blocks and 8-bit states exactly as the whole tensor does. (N + 1) values.
std::vector<uint64_t> optimizer_shard_bounds(const std::vector<uint64_t>& counts, uint32_t ranks, bool blockwise_8bit);
// One part of a slice: elements [first, first + count) of tensor `tensor`, its state at byte
// `state_offset` of the slice's state buffer (`state_bytes` long: 4 per element, or the blockwise
// 8-bit layout of a standalone tensor of `count` elements when `packed`).
struct ShardPiece {
  size_t tensor = 0;
  uint64_t first = 0, count = 0;
  uint64_t state_offset = 0, state_bytes = 0;
  bool packed = false;
};
std::vector<ShardPiece> optimizer_shard_pieces(const std::vector<uint64_t>& counts, const std::vector<uint64_t>& bounds,
                                               uint32_t rank, bool blockwise_8bit);
// Bytes of one optimizer state of the largest slice (what each rank plans).
uint64_t optimizer_shard_state_bytes(const std::vector<uint64_t>& counts, uint32_t ranks, bool blockwise_8bit);

}  // namespace vkt::plan
