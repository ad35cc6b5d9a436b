#include "engine/kernels/norm.hpp"

#include <cmath>
#include <vector>

#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"
#include "engine/kernels/reduce.hpp"

namespace vkt::kernels {

void rmsnorm(Recorder& recorder, const BufferRange& x, const BufferRange& weight, const BufferRange& y,
             const BufferRange& rstd, uint32_t rows, uint32_t cols, float eps, float weight_offset, DType act) {
  uint64_t elements = uint64_t(rows) * cols;
  require_index_range(elements, "rmsnorm");
  require_bytes(x, act_bytes(elements, act), "rmsnorm", "x");
  require_bytes(y, act_bytes(elements, act), "rmsnorm", "y");
  require_bytes(weight, uint64_t(cols) * 4, "rmsnorm", "weight");
  require_bytes(rstd, uint64_t(rows) * 4, "rmsnorm", "rstd");
  struct {
    uint64_t x, weight, y, rstd;
    uint32_t rows, cols;
    float eps, weight_offset;
  } push{x.address, weight.address, y.address, rstd.address, rows, cols, eps, weight_offset};
  const uint32_t specialization[] = {row_threads(recorder.context())};
  record_dispatch(recorder, {.shader = act_shader(recorder, "rmsnorm", act),
                             .specialization = specialization,
                             .push = push,
                             .grid = grid_1d(rows, 1),  // one workgroup per row
                             .reads = {x, weight},
                             .writes = {y, rstd}});
}

uint64_t rmsnorm_backward_workspace_bytes(uint32_t rows, uint32_t cols) { return sum_rows_workspace_bytes(rows, cols); }

void rmsnorm_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& x, const BufferRange& weight,
                      const BufferRange& rstd, const BufferRange& dx, const BufferRange* d_weight,
                      const BufferRange& workspace, uint32_t rows, uint32_t cols, bool accumulate_dx,
                      float weight_offset, DType act) {
  uint64_t elements = uint64_t(rows) * cols;
  require_index_range(elements, "rmsnorm_backward");
  require_bytes(dy, act_bytes(elements, act), "rmsnorm_backward", "dy");
  require_bytes(x, act_bytes(elements, act), "rmsnorm_backward", "x");
  require_bytes(dx, act_bytes(elements, act), "rmsnorm_backward", "dx");
  require_bytes(weight, uint64_t(cols) * 4, "rmsnorm_backward", "weight");
  require_bytes(rstd, uint64_t(rows) * 4, "rmsnorm_backward", "rstd");
  VKT_ASSERT(!(accumulate_dx && dx.overlaps(dy)), "rmsnorm_backward: dx may be dy only when not accumulating");
  // The weight gradient first: it reads dy, which dx may overwrite.
  if (d_weight) {
    require_bytes(*d_weight, uint64_t(cols) * 4, "rmsnorm_backward", "d_weight");
    require_bytes(workspace, rmsnorm_backward_workspace_bytes(rows, cols), "rmsnorm_backward", "workspace");
    ColumnSumPlan plan = column_sum_plan(rows, cols);
    BufferRange partials = slice(workspace, 0, uint64_t(plan.row_blocks) * cols * 4);
    struct {
      uint64_t dy, x, rstd, partials;
      uint32_t rows, cols, col_lanes, rows_per_block;
    } push{dy.address, x.address, rstd.address, partials.address, rows, cols, plan.col_lanes, plan.rows_per_block};
    record_dispatch(recorder, {.shader = act_shader(recorder, "rmsnorm_backward_weight", act),
                               .push = push,
                               .grid = {ceil_div(cols, plan.col_lanes), plan.row_blocks, 1},
                               .reads = {dy, x, rstd},
                               .writes = {partials}});
    sum_rows_finish(recorder, partials, *d_weight, cols, plan.row_blocks, true);
  }
  struct {
    uint64_t dy, x, weight, rstd, dx;
    uint32_t rows, cols, accumulate;
    float weight_offset;
  } push{dy.address, x.address, weight.address,          rstd.address, dx.address,
         rows,       cols,      accumulate_dx ? 1u : 0u, weight_offset};
  const uint32_t specialization[] = {row_threads(recorder.context())};
  record_dispatch(recorder, {.shader = act_shader(recorder, "rmsnorm_backward", act),
                             .specialization = specialization,
                             .push = push,
                             .grid = grid_1d(rows, 1),
                             .reads = {dy, x, weight, rstd, dx},
                             .writes = {dx}});
}

}  // namespace vkt::kernels

namespace vkt::ref {

void rmsnorm(const float* x, const float* weight, float* y, float* rstd, uint32_t rows, uint32_t cols, float eps,
             float weight_offset) {
  for (uint32_t r = 0; r < rows; r++) {
    const float* row = x + size_t(r) * cols;
    double squares = 0;
    for (uint32_t c = 0; c < cols; c++) squares += double(row[c]) * row[c];
    double inverse = 1.0 / std::sqrt(squares / cols + eps);
    if (rstd) rstd[r] = static_cast<float>(inverse);
    for (uint32_t c = 0; c < cols; c++)
      y[size_t(r) * cols + c] = static_cast<float>((double(weight[c]) + weight_offset) * (row[c] * inverse));
  }
}

void rmsnorm_backward(const float* dy, const float* x, const float* weight, float* dx, float* d_weight, uint32_t rows,
                      uint32_t cols, float eps, bool accumulate_dx, float weight_offset) {
  std::vector<double> weight_sum(cols, 0.0);
  for (uint32_t r = 0; r < rows; r++) {
    const float* xr = x + size_t(r) * cols;
    const float* dyr = dy + size_t(r) * cols;
    double squares = 0;
    for (uint32_t c = 0; c < cols; c++) squares += double(xr[c]) * xr[c];
    double inverse = 1.0 / std::sqrt(squares / cols + eps);
    double dn_n = 0;
    for (uint32_t c = 0; c < cols; c++)
      dn_n += double(dyr[c]) * (double(weight[c]) + weight_offset) * (xr[c] * inverse);
    double mean_dn_n = dn_n / cols;
    for (uint32_t c = 0; c < cols; c++) {
      double n = xr[c] * inverse;
      double result = inverse * (double(dyr[c]) * (double(weight[c]) + weight_offset) - n * mean_dn_n);
      float& out = dx[size_t(r) * cols + c];
      out = static_cast<float>(accumulate_dx ? out + result : result);
      weight_sum[c] += double(dyr[c]) * n;
    }
  }
  if (d_weight)
    for (uint32_t c = 0; c < cols; c++) d_weight[c] = static_cast<float>(d_weight[c] + weight_sum[c]);
}

}  // namespace vkt::ref
