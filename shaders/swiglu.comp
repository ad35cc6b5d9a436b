#version 460
//! variant gelu: -DGELU_TANH
#extension GL_GOOGLE_include_directive : require
// Gated activation h = act(gate) * up:
//   SwiGLU (Llama): act(g) = silu(g) = g / (1 + exp(-g)) (as torch computes it);
//   GeGLU (variant gelu, Gemma's gelu_pytorch_tanh): act(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
#include "common.glsl"
#include "gated_activation.glsl"
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
  FloatBuffer(p.h).data[i] = gate_activation(g) * u;
}
