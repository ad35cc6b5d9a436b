#version 460
#extension GL_GOOGLE_include_directive : require
// Weighted sum of `count` tensors (mergekit's linear merge, and the combination step of slerp
// and passthrough's scale):
//   out[i] = (Σ_j coefficients[j] * stack[j * stride + i]) / divisor
// summed in fp32 in model order j = 0, 1, ... with every product rounded before it is added
// (`precise`: no fused multiply-add), exactly as ref::merge_linear does. One thread per element.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t stack;         // (count, stride) fp32: the models' values of this chunk
  uint64_t coefficients;  // (count) fp32
  uint64_t out_values;    // (n) fp32
  uint n;
  uint count;
  uint stride;            // elements between consecutive models in `stack` (>= n)
  float divisor;          // 1 when not normalizing
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  FloatBuffer stack = FloatBuffer(p.stack);
  FloatBuffer coefficients = FloatBuffer(p.coefficients);
  precise float sum = 0.0;
  for (uint j = 0; j < p.count; j++) {
    precise float term = coefficients.data[j] * stack.data[j * p.stride + i];
    sum += term;
  }
  precise float result = sum / p.divisor;
  FloatBuffer(p.out_values).data[i] = result;
}
