#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
//! variant softcap_f16: -DSOFTCAP -DACT_F16
//! variant softcap_bf16: -DSOFTCAP -DACT_BF16
//! variant softcap: -DSOFTCAP
#extension GL_GOOGLE_include_directive : require
// x *= s, or x *= s * factor[0] with a factor in device memory (e.g. the gradient-clipping
// coefficient computed on the device during a replayed step).
// Variant softcap: x = s * tanh(x / s) (Gemma 2's final logit soft-capping of output logits;
// |x / s| > 15 is +-1 in fp32, the clamp keeps an exp-based tanh finite).
#include "common.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;       // (n) activation, in place
  uint64_t factor;  // (1) fp32, or 0 for none
  uint n;
  float s;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  float s = p.factor != 0ul ? p.s * FloatBuffer(p.factor).data[0] : p.s;
  ActBuffer x = ActBuffer(p.x);
#ifdef SOFTCAP
  act_store(x, i, s * tanh(clamp(act_load(x, i) / s, -15.0, 15.0)));
#else
  act_store(x, i, act_load(x, i) * s);
#endif
}
