#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// embedding_backward, step 4 of 4: d_table[id, :] += sum of d_out[t, :] over the tokens t with
// that id, added in token order (deterministic). Workgroup (i, column block): when sorted slot i
// starts a run of equal ids, it walks the run for its 256 columns; other slots exit at once.
#include "common.glsl"
#include "act_storage.glsl"
#define THREADS 256
layout(local_size_x = THREADS) in;

layout(push_constant) uniform Push {
  uint64_t ids;      // (tokens) uint32
  uint64_t sorted;   // (tokens) uint32, from embedding_backward_sort
  uint64_t counts;   // (vocab + 1) uint32: counts[vocab] = number of valid tokens
  uint64_t d_out;    // (tokens, hidden) activation gradient (act_storage.glsl)
  uint64_t d_table;  // (vocab, hidden) fp32, accumulated
  uint tokens, vocab, hidden;
} p;

void main() {
  uint slot = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  uint valid = UintBuffer(p.counts).data[p.vocab];
  if (slot >= valid) return;
  UintBuffer ids = UintBuffer(p.ids), sorted = UintBuffer(p.sorted);
  uint id = ids.data[sorted.data[slot]];
  if (slot > 0 && ids.data[sorted.data[slot - 1]] == id) return;  // not the start of a run
  uint column = gl_WorkGroupID.z * THREADS + gl_LocalInvocationID.x;
  if (column >= p.hidden) return;
  ActBuffer d_out = ActBuffer(p.d_out);
  float sum = 0.0;
  for (uint i = slot; i < valid; i++) {
    uint token = sorted.data[i];
    if (ids.data[token] != id) break;
    sum += act_load(d_out, token * p.hidden + column);
  }
  FloatBuffer(p.d_table).data[id * p.hidden + column] += sum;
}
