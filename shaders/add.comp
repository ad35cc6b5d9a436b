#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// out = a + b, element-wise; out may be a or b.
#include "common.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t a;    // (n) activation
  uint64_t b;    // (n) activation
  uint64_t out_; // (n) activation
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  act_store(ActBuffer(p.out_), i, act_load(ActBuffer(p.a), i) + act_load(ActBuffer(p.b), i));
}
