#version 460
//! variant gelu: -DGELU_TANH
#extension GL_GOOGLE_include_directive : require
// Gated activation backward (swiglu.comp): d_gate = dh * up * act'(gate), d_up = dh * act(gate).
// Each invocation reads its element of every input before writing, so d_gate may be gate and
// d_up may be up (in place).
#include "common.glsl"
#include "gated_activation.glsl"
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
  FloatBuffer(p.d_gate).data[i] = dh * u * gate_activation_derivative(g);
  FloatBuffer(p.d_up).data[i] = dh * gate_activation(g);
}
