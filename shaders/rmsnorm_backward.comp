#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// RMSNorm backward for x, one workgroup per row, with the rstd saved by the forward pass:
//   n = x * rstd, dn = dy * (weight + weight_offset), dx = rstd * (dn - n * mean(dn * n))
//   [(+ dx) when accumulating]
// The weight gradient is a column sum over rows: rmsnorm_backward_weight + sum_rows_finish.
#include "common.glsl"
#include "row_reduce.glsl"
#include "act_storage.glsl"

layout(push_constant) uniform Push {
  uint64_t dy;      // (rows, cols) activation (act_storage.glsl)
  uint64_t x;       // (rows, cols) activation
  uint64_t weight;  // (cols) fp32
  uint64_t rstd;    // (rows) fp32
  uint64_t dx;      // (rows, cols) activation; may be dy when not accumulating
  uint rows, cols;
  uint accumulate;  // 1: dx += result (residual stream), 0: dx = result
  float weight_offset;  // 0: Llama, 1: Gemma
} p;

void main() {
  uint row = workgroup_index_1d();
  if (row >= p.rows) return;
  ActBuffer dy = ActBuffer(p.dy), x = ActBuffer(p.x), dx = ActBuffer(p.dx);
  FloatBuffer weight = FloatBuffer(p.weight);
  uint lane = gl_LocalInvocationID.x;
  uint base = row * p.cols;
  float rstd = FloatBuffer(p.rstd).data[row];
  float partial = 0.0;
  for (uint c = lane; c < p.cols; c += ROW_THREADS)
    partial += act_load(dy, base + c) * (weight.data[c] + p.weight_offset) * act_load(x, base + c);
  // mean(dn * n) = rstd * sum(dn * x) / cols
  float mean_dn_n = workgroup_sum(partial) * rstd / float(p.cols);
  for (uint c = lane; c < p.cols; c += ROW_THREADS) {
    float n = act_load(x, base + c) * rstd;
    float dn = act_load(dy, base + c) * (weight.data[c] + p.weight_offset);
    float result = rstd * (dn - n * mean_dn_n);
    act_store(dx, base + c, p.accumulate != 0u ? act_load(dx, base + c) + result : result);
  }
}
