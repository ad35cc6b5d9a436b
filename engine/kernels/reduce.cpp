#include "engine/kernels/reduce.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

uint32_t row_threads(const vk::Context& context) {
  if (const char* value = std::getenv("VKT_ROW_THREADS")) {
    unsigned long threads = std::strtoul(value, nullptr, 10);
    // At least 8: with fewer invocations a 150k-vocabulary row would need more than 65535 loop
    // iterations per invocation, which lavapipe silently cuts short (see embedding.hpp).
    if (threads < 8 || threads > 1024 || (threads & (threads - 1)) != 0 ||
        threads > context.caps().max_workgroup_invocations)
      throw UserError(
          "VKT_ROW_THREADS=" + std::string(value) + " is not a usable workgroup size",
          "use a power of two from 8 to " + std::to_string(context.caps().max_workgroup_invocations) + ", or unset it");
    return static_cast<uint32_t>(threads);
  }
  return context.caps().device_type == VK_PHYSICAL_DEVICE_TYPE_CPU ? 32 : 256;
}

ColumnSumPlan column_sum_plan(uint32_t rows, uint32_t cols) {
  ColumnSumPlan plan;
  while (plan.col_lanes < 64 && plan.col_lanes < cols) plan.col_lanes *= 2;
  // At least 256 rows per block (enough work per workgroup), at most ~1M partial values
  // (4 MiB of workspace) and 1024 blocks (the serial length of the finishing pass).
  uint32_t max_blocks = std::clamp<uint32_t>((1u << 20) / std::max(cols, 1u), 1, 1024);
  plan.rows_per_block = std::max<uint32_t>(256, ceil_div(rows, max_blocks));
  plan.row_blocks = std::max<uint32_t>(1, ceil_div(rows, plan.rows_per_block));
  return plan;
}

uint64_t sum_rows_workspace_bytes(uint32_t rows, uint32_t cols) {
  return uint64_t(column_sum_plan(rows, cols).row_blocks) * cols * 4;
}

void sum_rows_finish(Recorder& recorder, const BufferRange& partials, const BufferRange& out, uint32_t cols,
                     uint32_t row_blocks, bool accumulate) {
  require_bytes(partials, uint64_t(row_blocks) * cols * 4, "sum_rows_finish", "partials");
  require_bytes(out, uint64_t(cols) * 4, "sum_rows_finish", "out");
  struct {
    uint64_t partials, out;
    uint32_t cols, row_blocks, accumulate;
  } push{partials.address, out.address, cols, row_blocks, accumulate ? 1u : 0u};
  record_dispatch(recorder, {.shader = "sum_rows_finish",
                             .push = push,
                             .grid = grid_1d(cols, 256),
                             .reads = {partials, out},
                             .writes = {out}});
}

void sum_rows(Recorder& recorder, const BufferRange& x, const BufferRange& out, const BufferRange& workspace,
              uint32_t rows, uint32_t cols, bool accumulate) {
  if (cols == 0) return;
  require_index_range(uint64_t(rows) * cols, "sum_rows");
  require_bytes(x, uint64_t(rows) * cols * 4, "sum_rows", "x");
  require_bytes(out, uint64_t(cols) * 4, "sum_rows", "out");
  require_bytes(workspace, sum_rows_workspace_bytes(rows, cols), "sum_rows", "workspace");
  ColumnSumPlan plan = column_sum_plan(rows, cols);
  BufferRange partials = slice(workspace, 0, uint64_t(plan.row_blocks) * cols * 4);
  struct {
    uint64_t x, partials;
    uint32_t rows, cols, col_lanes, rows_per_block;
  } push{x.address, partials.address, rows, cols, plan.col_lanes, plan.rows_per_block};
  record_dispatch(recorder, {.shader = "sum_rows",
                             .push = push,
                             .grid = {ceil_div(cols, plan.col_lanes), plan.row_blocks, 1},
                             .reads = {x},
                             .writes = {partials}});
  sum_rows_finish(recorder, partials, out, cols, plan.row_blocks, accumulate);
}

}  // namespace vkt::kernels

namespace vkt::ref {
void sum_rows(const float* x, float* out, uint32_t rows, uint32_t cols, bool accumulate) {
  for (uint32_t c = 0; c < cols; c++) {
    double sum = accumulate ? out[c] : 0.0;
    for (uint32_t r = 0; r < rows; r++) sum += x[size_t(r) * cols + c];
    out[c] = static_cast<float>(sum);
  }
}
}  // namespace vkt::ref
