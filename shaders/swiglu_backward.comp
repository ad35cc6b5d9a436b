#version 460
#extension GL_GOOGLE_include_directive : require
// SwiGLU backward: with s = sigmoid(gate),
//   d_gate = dh * up * s * (1 + gate * (1 - s)),   d_up = dh * gate * s.
// Each invocation reads its element of every input before writing, so d_gate may be gate and
// d_up may be up (in place).
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t dh;      // (n) fp32
  uint64_t gate;    // (n) fp32
  uint64_t up;      // (n) fp32
  uint64_t d_gate;  // (n) fp32
  uint64_t d_up;    // (n) fp32
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  float dh = FloatBuffer(p.dh).data[i];
  float g = FloatBuffer(p.gate).data[i];
  float u = FloatBuffer(p.up).data[i];
  float s = 1.0 / (1.0 + exp(-g));
  FloatBuffer(p.d_gate).data[i] = dh * u * (s * (1.0 + g * (1.0 - s)));
  FloatBuffer(p.d_up).data[i] = dh * (g * s);
}
