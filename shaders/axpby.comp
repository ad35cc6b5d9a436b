#version 460
#extension GL_GOOGLE_include_directive : require
// y = alpha * x + beta * y over n elements (residual adds, scaling, accumulation).
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;  // (n) fp32
  uint64_t y;  // (n) fp32, updated in place
  uint n;
  float alpha;
  float beta;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  FloatBuffer y = FloatBuffer(p.y);
  float previous = p.beta == 0.0 ? 0.0 : y.data[i];  // beta 0 ignores NaN garbage in y
  y.data[i] = p.alpha * FloatBuffer(p.x).data[i] + p.beta * previous;
}
