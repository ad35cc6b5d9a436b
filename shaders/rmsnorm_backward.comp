#version 460
#extension GL_GOOGLE_include_directive : require
// RMSNorm backward for x, one workgroup per row, with the rstd saved by the forward pass:
//   n = x * rstd, dn = dy * (weight + weight_offset), dx = rstd * (dn - n * mean(dn * n))
//   [(+ dx) when accumulating]
// The weight gradient is a column sum over rows: rmsnorm_backward_weight + sum_rows_finish.
#include "common.glsl"
#include "row_reduce.glsl"

layout(push_constant) uniform Push {
  uint64_t dy;      // (rows, cols) fp32
  uint64_t x;       // (rows, cols) fp32
  uint64_t weight;  // (cols) fp32
  uint64_t rstd;    // (rows) fp32
  uint64_t dx;      // (rows, cols) fp32; may be dy when not accumulating
  uint rows, cols;
  uint accumulate;  // 1: dx += result (residual stream), 0: dx = result
  float weight_offset;  // 0: Llama, 1: Gemma
} p;

void main() {
  uint row = workgroup_index_1d();
  if (row >= p.rows) return;
  FloatBuffer dy = FloatBuffer(p.dy), x = FloatBuffer(p.x), weight = FloatBuffer(p.weight), dx = FloatBuffer(p.dx);
  uint lane = gl_LocalInvocationID.x;
  uint base = row * p.cols;
  float rstd = FloatBuffer(p.rstd).data[row];
  float partial = 0.0;
  for (uint c = lane; c < p.cols; c += ROW_THREADS)
    partial += dy.data[base + c] * (weight.data[c] + p.weight_offset) * x.data[base + c];
  // mean(dn * n) = rstd * sum(dn * x) / cols
  float mean_dn_n = workgroup_sum(partial) * rstd / float(p.cols);
  for (uint c = lane; c < p.cols; c += ROW_THREADS) {
    float n = x.data[base + c] * rstd;
    float dn = dy.data[base + c] * (weight.data[c] + p.weight_offset);
    float result = rstd * (dn - n * mean_dn_n);
    dx.data[base + c] = p.accumulate != 0u ? dx.data[base + c] + result : result;
  }
}
