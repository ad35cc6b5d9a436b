#version 460
#extension GL_GOOGLE_include_directive : require
// SwiGLU: h = silu(gate) * up, silu(g) = g / (1 + exp(-g)) (as torch computes it).
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t gate;  // (n) fp32
  uint64_t up;    // (n) fp32
  uint64_t h;     // (n) fp32; may be gate or up
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  float g = FloatBuffer(p.gate).data[i];
  float u = FloatBuffer(p.up).data[i];
  FloatBuffer(p.h).data[i] = g / (1.0 + exp(-g)) * u;
}
