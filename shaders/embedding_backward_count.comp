#version 460
#extension GL_GOOGLE_include_directive : require
// embedding_backward, step 1 of 4: counts[v] = number of tokens with id v (ids >= vocab are
// skipped). Integer atomics: the counts do not depend on the order they run in.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t ids;     // (tokens) uint32
  uint64_t counts;  // (vocab + 1) uint32, zeroed before
  uint tokens, vocab;
} p;

void main() {
  uint token = global_index_1d(256);
  if (token >= p.tokens) return;
  uint id = UintBuffer(p.ids).data[token];
  if (id < p.vocab) atomicAdd(UintBuffer(p.counts).data[id], 1u);
}
