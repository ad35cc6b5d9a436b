#version 460
#extension GL_GOOGLE_include_directive : require
// embedding_backward, step 3 of 4: a stable counting sort of token positions by id.
// sorted[starts[id] + (number of earlier tokens with the same id)] = token. Stability is what
// makes the gradient deterministic: step 4 adds the rows of one id in token order.
// One workgroup walks the tokens in chunks of THREADS; within a chunk each invocation ranks its
// token among the chunk's earlier tokens with the same id, and the last one of each id advances
// that id's cursor (the counts array, which holds the starts on entry and the ends on exit).
#include "common.glsl"
#define THREADS 256
layout(local_size_x = THREADS) in;

// Cursors are written by one invocation and read by others of the same workgroup.
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CoherentUintBuffer { uint data[]; };

layout(push_constant) uniform Push {
  uint64_t ids;     // (tokens) uint32
  uint64_t counts;  // (vocab + 1) uint32: starts of each id (from the scan), advanced here
  uint64_t sorted;  // (tokens) uint32: token positions ordered by (id, position)
  uint tokens, vocab;
} p;

const uint invalid_id = 0xffffffffu;
shared uint chunk_ids[THREADS];

void main() {
  CoherentUintBuffer cursors = CoherentUintBuffer(p.counts);
  uint lane = gl_LocalInvocationID.x;
  for (uint base = 0; base < p.tokens; base += THREADS) {
    uint token = base + lane;
    uint id = token < p.tokens ? UintBuffer(p.ids).data[token] : invalid_id;
    if (id >= p.vocab) id = invalid_id;
    chunk_ids[lane] = id;
    barrier();
    uint rank = 0, same = 0;
    if (id != invalid_id) {
      for (uint other = 0; other < THREADS; other++) {
        bool match = chunk_ids[other] == id;
        if (match && other < lane) rank++;
        if (match) same++;
      }
      UintBuffer(p.sorted).data[cursors.data[id] + rank] = token;
    }
    memoryBarrierBuffer();
    barrier();  // every cursor read of this chunk happens before any update
    if (id != invalid_id && rank == same - 1) cursors.data[id] += same;
    memoryBarrierBuffer();
    barrier();  // updates visible before the next chunk reads them
  }
}
