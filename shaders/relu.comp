#version 460
//! variant backward: -DBACKWARD
#extension GL_GOOGLE_include_directive : require
// P-tuning's prompt encoder (PEFT's MLP head): y = max(x, 0) in place; variant backward:
// dx = dy where the forward's output y > 0, else 0 (y > 0 exactly where x > 0, so the saved output
// is enough; at x = 0 the gradient is 0, as torch's relu gives).
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
  if (!(x > 0.0)) FloatBuffer(p.dy).data[i] = 0.0;
#else
  FloatBuffer(p.x).data[i] = max(x, 0.0);
#endif
}
