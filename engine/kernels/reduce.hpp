#pragma once
// Deterministic sums over rows: out[c] = sum over r of x[r, c]. The partition into row blocks
// and the order of every addition depend only on (rows, cols), never on the device or on
// timing, so a replayed step gives bit-identical sums (loss totals, bias and norm-weight
// gradients). Two passes: partial sums per row block into a workspace, then one pass adding the
// partials of each column in block order.
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

// Workgroup size of the one-workgroup-per-row kernels (rmsnorm, rmsnorm_backward, cross_entropy):
// specialization constant 0 of shaders/row_reduce.glsl. 256 on GPUs; 32 on CPU drivers
// (lavapipe), where a barrier switches between all SIMD batches of the workgroup and 256
// invocations made rmsnorm 3-4x slower. VKT_ROW_THREADS=N (a power of two, 8..1024) overrides it.
uint32_t row_threads(const vk::Context& context);

// How a column sum is split; shared by sum_rows and rmsnorm_backward's weight gradient.
struct ColumnSumPlan {
  uint32_t col_lanes = 1;       // columns per workgroup (a power of two <= 64); the rest of the
                                // 256 invocations walk rows
  uint32_t rows_per_block = 1;  // rows summed by one workgroup
  uint32_t row_blocks = 1;      // partial sums per column
};
ColumnSumPlan column_sum_plan(uint32_t rows, uint32_t cols);

// Bytes of workspace sum_rows needs: (row_blocks, cols) fp32 partials.
uint64_t sum_rows_workspace_bytes(uint32_t rows, uint32_t cols);

// out (+)= column sums of x.
// x: (rows, cols) fp32; out: (cols) fp32, overwritten, or added to when `accumulate`;
// workspace: sum_rows_workspace_bytes(rows, cols) bytes.
void sum_rows(Recorder& recorder, const BufferRange& x, const BufferRange& out, const BufferRange& workspace,
              uint32_t rows, uint32_t cols, bool accumulate = false);

// Records the second pass over partials (row_blocks, cols) fp32: out (+)= sum over blocks.
// Used by sum_rows and rmsnorm_backward.
void sum_rows_finish(Recorder& recorder, const BufferRange& partials, const BufferRange& out, uint32_t cols,
                     uint32_t row_blocks, bool accumulate);

}  // namespace vkt::kernels

namespace vkt::ref {
// x: (rows, cols); out: (cols); sums in double.
void sum_rows(const float* x, float* out, uint32_t rows, uint32_t cols, bool accumulate = false);
}  // namespace vkt::ref
