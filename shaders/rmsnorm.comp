#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// RMSNorm as HF LlamaRMSNorm computes it in fp32: y = (weight + weight_offset) * (x * rstd)
// (weight_offset 1: Gemma's x * rstd * (1 + w)),
// rstd = 1 / sqrt(mean(x^2) + eps), one workgroup per row. rstd is saved for the backward pass.
#include "common.glsl"
#include "row_reduce.glsl"
#include "act_storage.glsl"

layout(push_constant) uniform Push {
  uint64_t x;       // (rows, cols) activation (act_storage.glsl)
  uint64_t weight;  // (cols) fp32
  uint64_t y;       // (rows, cols) activation; may be x (in place)
  uint64_t rstd;    // (rows) fp32
  uint rows, cols;
  float eps;
  float weight_offset;  // 0: Llama, 1: Gemma
} p;

void main() {
  uint row = workgroup_index_1d();
  if (row >= p.rows) return;  // the same for the whole workgroup: barriers stay uniform
  ActBuffer x = ActBuffer(p.x), y = ActBuffer(p.y);
  FloatBuffer weight = FloatBuffer(p.weight);
  uint lane = gl_LocalInvocationID.x;
  uint base = row * p.cols;
  float squares = 0.0;
  for (uint c = lane; c < p.cols; c += ROW_THREADS) {
    float v = act_load(x, base + c);
    squares += v * v;
  }
  float mean_square = workgroup_sum(squares) / float(p.cols);
  float rstd = inversesqrt(mean_square + p.eps);
  if (lane == 0) FloatBuffer(p.rstd).data[row] = rstd;
  for (uint c = lane; c < p.cols; c += ROW_THREADS)
    act_store(y, base + c, (weight.data[c] + p.weight_offset) * (act_load(x, base + c) * rstd));
}
