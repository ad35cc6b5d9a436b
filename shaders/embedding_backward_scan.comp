#version 460
#extension GL_GOOGLE_include_directive : require
// embedding_backward, step 2 of 4: exclusive prefix sum of counts over the vocabulary, in place,
// so counts[v] becomes the first slot of id v in the sorted order; counts[vocab] = number of
// valid tokens. One workgroup: each invocation scans a contiguous chunk of ids.
#include "common.glsl"
#define THREADS 256
layout(local_size_x = THREADS) in;

layout(push_constant) uniform Push {
  uint64_t counts;  // (vocab + 1) uint32
  uint vocab;
} p;

shared uint chunk_totals[THREADS];

void main() {
  UintBuffer counts = UintBuffer(p.counts);
  uint lane = gl_LocalInvocationID.x;
  uint chunk = (p.vocab + THREADS - 1) / THREADS;
  uint begin = min(lane * chunk, p.vocab), end = min(begin + chunk, p.vocab);
  uint total = 0;
  for (uint v = begin; v < end; v++) total += counts.data[v];
  chunk_totals[lane] = total;
  barrier();
  if (lane == 0) {  // 256 additions: not worth a parallel scan
    uint running = 0;
    for (uint i = 0; i < THREADS; i++) {
      uint count = chunk_totals[i];
      chunk_totals[i] = running;
      running += count;
    }
    counts.data[p.vocab] = running;
  }
  barrier();
  uint running = chunk_totals[lane];
  for (uint v = begin; v < end; v++) {
    uint count = counts.data[v];
    counts.data[v] = running;
    running += count;
  }
}
