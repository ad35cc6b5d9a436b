#version 460
#extension GL_GOOGLE_include_directive : require
// The three sums slerp needs, as deterministic partial sums: workgroup g writes
//   partials[3g + 0] = Σ a[i]²,  partials[3g + 1] = Σ b[i]²,  partials[3g + 2] = Σ a[i]·b[i]
// over its ELEMENTS_PER_GROUP consecutive elements; the host adds the partials in double. Each
// thread accumulates 16 elements strided by the workgroup size (coalesced), then a shared-memory
// tree halves the 256 values: the order of every addition depends only on n.
#include "common.glsl"
#define THREADS 256
#define PER_THREAD 16
layout(local_size_x = THREADS) in;

layout(push_constant) uniform Push {
  uint64_t a;         // (n) fp32
  uint64_t b;         // (n) fp32
  uint64_t partials;  // (3 * ceil(n / 4096)) fp32
  uint n;
} p;

shared vec3 sums[THREADS];

void main() {
  uint group = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  uint thread = gl_LocalInvocationID.x;
  uint start = group * (THREADS * PER_THREAD);
  if (start >= p.n) return;  // spare workgroups of the 2-D grid (uniform per workgroup)
  precise vec3 sum = vec3(0.0);
  for (uint k = 0; k < PER_THREAD; k++) {
    uint i = start + k * THREADS + thread;
    if (i < p.n) {
      float x = FloatBuffer(p.a).data[i], y = FloatBuffer(p.b).data[i];
      precise vec3 term = vec3(x * x, y * y, x * y);
      sum += term;
    }
  }
  sums[thread] = sum;
  barrier();
  for (uint half_size = THREADS / 2; half_size > 0; half_size /= 2) {
    if (thread < half_size) sums[thread] += sums[thread + half_size];
    barrier();
  }
  if (thread == 0) {
    FloatBuffer partials = FloatBuffer(p.partials);
    partials.data[3 * group + 0] = sums[0].x;
    partials.data[3 * group + 1] = sums[0].y;
    partials.data[3 * group + 2] = sums[0].z;
  }
}
