#version 460
#extension GL_GOOGLE_include_directive : require
// out = a + b, element-wise; out may be a or b.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t a;    // (n) fp32
  uint64_t b;    // (n) fp32
  uint64_t out_; // (n) fp32
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  FloatBuffer(p.out_).data[i] = FloatBuffer(p.a).data[i] + FloatBuffer(p.b).data[i];
}
