#version 460
//! variant backward: -DBACKWARD
#extension GL_GOOGLE_include_directive : require
// Prefix tuning's prefix encoder (PEFT's PrefixEncoder with prefix_projection: Linear-Tanh-Linear):
// y = tanh(x) in place; variant backward: dx = dy * (1 - y²) from the forward's output y (what the
// forward keeps). GLSL's tanh of a large |x| can be inf/inf on some drivers: computed from exp(-2|x|).
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;  // (n) fp32: forward x -> y in place; backward: the forward's y
  uint64_t dy; // (n) fp32, backward only: dy -> dx in place
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  float x = FloatBuffer(p.x).data[i];
#ifdef BACKWARD
  FloatBuffer(p.dy).data[i] *= 1.0 - x * x;
#else
  float e = exp(-2.0 * abs(x));  // in (0, 1]: no overflow
  FloatBuffer(p.x).data[i] = sign(x) * (1.0 - e) / (1.0 + e);
#endif
}
