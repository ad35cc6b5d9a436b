#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
//! variant gelu_f16: -DGELU_TANH -DACT_F16
//! variant gelu_bf16: -DGELU_TANH -DACT_BF16
//! variant gelu: -DGELU_TANH
#extension GL_GOOGLE_include_directive : require
// Gated activation backward (swiglu.comp): d_gate = dh * up * act'(gate), d_up = dh * act(gate).
// Each invocation reads its element of every input before writing, so d_gate may be gate and
// d_up may be up (in place).
#include "common.glsl"
#include "gated_activation.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t dh;      // (n) activation
  uint64_t gate;    // (n) activation
  uint64_t up;      // (n) activation
  uint64_t d_gate;  // (n) activation
  uint64_t d_up;    // (n) activation
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  float dh = act_load(ActBuffer(p.dh), i);
  float g = act_load(ActBuffer(p.gate), i);
  float u = act_load(ActBuffer(p.up), i);
  act_store(ActBuffer(p.d_gate), i, dh * u * gate_activation_derivative(g));
  act_store(ActBuffer(p.d_up), i, dh * gate_activation(g));
}
