#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// y = alpha * x + beta * y over n elements (residual adds, scaling, accumulation).
#include "common.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;  // (n) activation (act_storage.glsl; fp32 unless a 16-bit variant)
  uint64_t y;  // (n) activation, updated in place
  uint n;
  float alpha;
  float beta;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  ActBuffer y = ActBuffer(p.y);
  float previous = p.beta == 0.0 ? 0.0 : act_load(y, i);  // beta 0 ignores NaN garbage in y
  act_store(y, i, p.alpha * act_load(ActBuffer(p.x), i) + p.beta * previous);
}
