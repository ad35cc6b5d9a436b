#version 460
#extension GL_GOOGLE_include_directive : require
// The attention backward's pre-pass: delta = rowsum(d_o ∘ o) per (token, q head), the term
// that the softmax gradient subtracts (dS = P ∘ (dP - delta)). One thread per (token, head).
#include "common.glsl"
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint64_t o;      // (batch*seq_q, q_heads*head_dim) fp32
  uint64_t d_o;    // (batch*seq_q, q_heads*head_dim) fp32
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
  Vec4Buffer o = Vec4Buffer(p.o);
  Vec4Buffer d_o = Vec4Buffer(p.d_o);
  float sum = 0.0;
  for (uint d = 0; d < p.head_vec4s; d++) sum += dot(o.data[head_row * p.head_vec4s + d], d_o.data[head_row * p.head_vec4s + d]);
  FloatBuffer(p.delta).data[(sequence * p.q_heads + head) * p.seq_q + query] = sum;
}
