#include "engine/plan/data_parallel.hpp"

#include <algorithm>

#include "engine/kernels/optimizer_8bit.hpp"

namespace vkt::plan {

void add_data_parallel_staging(MemoryPlan& plan, uint32_t ranks) {
  if (ranks <= 1 || !plan.settings.training) return;
  uint64_t bytes = 12;  // loss.step (the loss, distillation's KL and CE parts) joins the last bucket
  for (const BufferSpec& spec : plan.buffers)
    if (spec.name.rfind("grad.", 0) == 0) bytes += spec.bytes;
  plan.buffers.push_back({"ddp.buckets", vk::Category::staging, vk::MemoryKind::staging, bytes, true});
}

void add_data_parallel_staging(PlanReport& report, uint32_t ranks) {
  for (MemoryPlan* plan : {&report.training, &report.with_checkpointing, &report.without_checkpointing})
    add_data_parallel_staging(*plan, ranks);
}

namespace {
bool packed_states(uint64_t count, bool blockwise_8bit) {
  return blockwise_8bit && count >= kernels::blockwise_8bit_min_elements;
}
}  // namespace

std::vector<uint64_t> optimizer_shard_bounds(const std::vector<uint64_t>& counts, uint32_t ranks, bool blockwise_8bit) {
  uint64_t total = 0;
  for (uint64_t count : counts) total += count;
  std::vector<uint64_t> bounds{0};
  for (uint64_t r = 1; r < ranks; r++) {
    uint64_t bound = total * r / ranks;
    // The tensor the bound falls in, and where it starts.
    uint64_t first = 0;
    size_t tensor = 0;
    while (tensor < counts.size() && first + counts[tensor] <= bound) first += counts[tensor++];
    if (tensor < counts.size() && packed_states(counts[tensor], blockwise_8bit)) {
      constexpr uint64_t block = kernels::blockwise_8bit_block, least = kernels::blockwise_8bit_min_elements;
      const uint64_t count = counts[tensor], start = std::max(first, bounds.back()) - first;  // within the tensor
      uint64_t offset = std::max((bound - first) / block * block, start);
      if (offset - start < least)
        offset = start;  // no part shorter than `least` before the bound
      else if (count - offset < least)
        offset = count;  // nor after it
      bound = first + offset;
    }
    bounds.push_back(std::max(bound, bounds.back()));
  }
  bounds.push_back(total);
  return bounds;
}

std::vector<ShardPiece> optimizer_shard_pieces(const std::vector<uint64_t>& counts, const std::vector<uint64_t>& bounds,
                                               uint32_t rank, bool blockwise_8bit) {
  std::vector<ShardPiece> pieces;
  uint64_t tensor_first = 0, state_offset = 0;
  const uint64_t begin = bounds.at(rank), end = bounds.at(rank + 1);
  for (size_t i = 0; i < counts.size(); tensor_first += counts[i], i++) {
    const uint64_t first = std::max(begin, tensor_first), last = std::min(end, tensor_first + counts[i]);
    if (first >= last) continue;
    ShardPiece piece{i,
                     first - tensor_first,
                     last - first,
                     state_offset,
                     4 * (last - first),
                     packed_states(counts[i], blockwise_8bit)};
    if (piece.packed) piece.state_bytes = kernels::adamw_8bit_state_bytes(piece.count);
    state_offset += piece.state_bytes;
    pieces.push_back(piece);
  }
  return pieces;
}

uint64_t optimizer_shard_state_bytes(const std::vector<uint64_t>& counts, uint32_t ranks, bool blockwise_8bit) {
  const std::vector<uint64_t> bounds = optimizer_shard_bounds(counts, ranks, blockwise_8bit);
  uint64_t largest = 0;
  for (uint32_t r = 0; r < ranks; r++) {
    uint64_t bytes = 0;
    for (const ShardPiece& piece : optimizer_shard_pieces(counts, bounds, r, blockwise_8bit))
      bytes += piece.state_bytes;
    largest = std::max(largest, bytes);
  }
  return largest;
}

}  // namespace vkt::plan
