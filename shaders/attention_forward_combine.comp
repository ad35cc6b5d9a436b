#version 460
#extension GL_GOOGLE_include_directive : require
// Merges the per-split partial results of a forward split over keys (decode): with each split's
// normalized partial o_s and logsumexp lse_s (+inf: the split saw no key),
//   lse = log sum_s exp(lse_s),  o = sum_s exp(lse_s - lse) o_s.
// One thread per (token, q head, vec4 of the head vector).
#include "common.glsl"
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint64_t partial_o;    // (splits, batch*seq_q, q_heads*head_dim) fp32
  uint64_t partial_lse;  // (splits, batch, q_heads, seq_q) fp32
  uint64_t o;            // (batch*seq_q, q_heads*head_dim) fp32
  uint64_t lse;          // (batch, q_heads, seq_q) fp32
  uint batch;
  uint seq_q;
  uint q_heads;
  uint head_vec4s;       // head_dim / 4
  uint splits;
} p;

const float INF = 1.0 / 0.0;

void main() {
  uint index = global_index_1d(64);
  uint head_rows = p.batch * p.seq_q * p.q_heads;  // (token, head) pairs
  if (index >= head_rows * p.head_vec4s) return;
  uint head_row = index / p.head_vec4s;  // token * q_heads + head
  uint head = head_row % p.q_heads;
  uint token = head_row / p.q_heads;
  uint sequence = token / p.seq_q;
  uint query = token - sequence * p.seq_q;
  uint stat = (sequence * p.q_heads + head) * p.seq_q + query;
  uint stat_count = p.batch * p.q_heads * p.seq_q;

  FloatBuffer partial_lse = FloatBuffer(p.partial_lse);
  float largest = -INF;
  for (uint s = 0; s < p.splits; s++) {
    float value = partial_lse.data[s * stat_count + stat];
    if (value < INF) largest = max(largest, value);
  }
  vec4 result = vec4(0.0);
  float lse = INF;
  if (largest > -INF) {
    float total = 0.0;
    for (uint s = 0; s < p.splits; s++) {
      float value = partial_lse.data[s * stat_count + stat];
      if (value == INF) continue;
      float weight = exp(value - largest);
      total += weight;
      uint64_t split_address = p.partial_o + uint64_t(s) * head_rows * p.head_vec4s * 16;
      result += weight * Vec4Buffer(split_address).data[index];
    }
    result /= total;
    lse = largest + log(total);
  }
  Vec4Buffer(p.o).data[index] = result;
  if (index % p.head_vec4s == 0) FloatBuffer(p.lse).data[stat] = lse;
}
