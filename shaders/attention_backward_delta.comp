#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
//! variant direct_f16: -DPAIR_LOADS -DACT_F16
//! variant direct_bf16: -DPAIR_LOADS -DACT_BF16
//! variant direct: -DPAIR_LOADS
#extension GL_GOOGLE_include_directive : require
// The attention backward's pre-pass: delta = rowsum(d_o ∘ o) per (token, q head), the term
// that the softmax gradient subtracts (dS = P ∘ (dP - delta)). One thread per (token, head).
// The "direct" variant (CPU drivers, with the direct attention bodies) reads 64-bit words:
// llvmpipe turns each vec4 load into four scalar accesses per lane, a uint64 into one.
#include "common.glsl"
#include "act_storage.glsl"
layout(local_size_x = 64) in;
#ifdef PAIR_LOADS
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer PairBuffer { uint64_t data[]; };
#endif

layout(push_constant) uniform Push {
  uint64_t o;      // (batch*seq_q, q_heads*head_dim) activation (act_storage.glsl)
  uint64_t d_o;    // (batch*seq_q, q_heads*head_dim) activation (act_storage.glsl)
  uint64_t delta;  // (batch, q_heads, seq_q) fp32, written
  uint batch;
  uint seq_q;
  uint q_heads;
  uint head_vec4s;  // head_dim / 4
} p;

void main() {
  uint head_row = global_index_1d(64);  // token * q_heads + head
  if (head_row >= p.batch * p.seq_q * p.q_heads) return;
  uint head = head_row % p.q_heads;
  uint token = head_row / p.q_heads;
  uint sequence = token / p.seq_q;
  uint query = token - sequence * p.seq_q;
#if defined(ACT_16BIT)
  // 16-bit activations: quads of 8 bytes, widened to fp32 before the products.
  float sum = 0.0;
  for (uint d = 0; d < p.head_vec4s; d++)
    sum += dot(act_load4(p.o, head_row * p.head_vec4s + d), act_load4(p.d_o, head_row * p.head_vec4s + d));
#elif defined(PAIR_LOADS)
  PairBuffer o = PairBuffer(p.o);
  PairBuffer d_o = PairBuffer(p.d_o);
  uint words = 2 * p.head_vec4s;
  vec2 pair_sum = vec2(0.0);
  for (uint w = 0; w < words; w++) {
    vec2 o_pair = uintBitsToFloat(unpackUint2x32(o.data[head_row * words + w]));
    pair_sum += o_pair * uintBitsToFloat(unpackUint2x32(d_o.data[head_row * words + w]));
  }
  float sum = pair_sum.x + pair_sum.y;
#else
  Vec4Buffer o = Vec4Buffer(p.o);
  Vec4Buffer d_o = Vec4Buffer(p.d_o);
  float sum = 0.0;
  for (uint d = 0; d < p.head_vec4s; d++) sum += dot(o.data[head_row * p.head_vec4s + d], d_o.data[head_row * p.head_vec4s + d]);
#endif
  FloatBuffer(p.delta).data[(sequence * p.q_heads + head) * p.seq_q + query] = sum;
}
