#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
//! variant gelu_f16: -DGELU_TANH -DACT_F16
//! variant gelu_bf16: -DGELU_TANH -DACT_BF16
//! variant gelu: -DGELU_TANH
#extension GL_GOOGLE_include_directive : require
// Gated activation h = act(gate) * up:
//   SwiGLU (Llama): act(g) = silu(g) = g / (1 + exp(-g)) (as torch computes it);
//   GeGLU (variant gelu, Gemma's gelu_pytorch_tanh): act(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
#include "common.glsl"
#include "gated_activation.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t gate;  // (n) activation
  uint64_t up;    // (n) activation
  uint64_t h;     // (n) activation; may be gate or up
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  float g = act_load(ActBuffer(p.gate), i);
  float u = act_load(ActBuffer(p.up), i);
  act_store(ActBuffer(p.h), i, gate_activation(g) * u);
}
