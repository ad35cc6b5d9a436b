#version 460
#extension GL_GOOGLE_include_directive : require
// slots[t] = i where indices[i] == ids[t], else count: which trained row (PEFT's trainable tokens)
// each token reads, so that embedding_backward can sum the rows' gradients into a (count, hidden)
// table; tokens outside the set get count, which embedding_backward skips. The set is small (the
// new special tokens of a chat format): a linear search per token.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t ids;      // (tokens) uint32
  uint64_t indices;  // (count) uint32
  uint64_t slots;    // (tokens) uint32
  uint tokens, count;
} p;

void main() {
  uint token = global_index_1d(256);
  if (token >= p.tokens) return;
  uint id = UintBuffer(p.ids).data[token];
  uint slot = p.count;
  for (uint i = 0; i < p.count; i++)
    if (UintBuffer(p.indices).data[i] == id) {
      slot = i;
      break;
    }
  UintBuffer(p.slots).data[token] = slot;
}
