#version 460
#extension GL_GOOGLE_include_directive : require
// DoRA's weight norm (PEFT's DoraLinearLayer.get_weight_norm: torch.linalg.norm(W + s·B·A, dim=1),
// one value per output row) and the scales the layer's forward and backward use:
//   norm[o] = ‖weight[o, :]‖₂          weight: (rows, cols) fp32, W + s·B·A already formed
//   init: magnitude[o] = norm[o]       (PEFT's initial magnitude vector)
//   inv_norm[o] = 1 / norm[o], scale[o] = magnitude[o] / norm[o]
// One workgroup per row: each thread sums the squares of a strided slice, then a shared tree.
#include "common.glsl"
#define THREADS 64
layout(local_size_x = THREADS) in;

layout(push_constant) uniform Push {
  uint64_t weight;     // (rows, cols) fp32
  uint64_t magnitude;  // (rows) fp32: read, or written with init
  uint64_t inv_norm;   // (rows) fp32
  uint64_t scale;      // (rows) fp32
  uint rows;
  uint cols;
  uint init;
} p;

shared float sums[THREADS];

void main() {
  uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  uint thread = gl_LocalInvocationID.x;
  if (row >= p.rows) return;  // spare workgroups of the 2-D grid (uniform per workgroup)
  FloatBuffer weight = FloatBuffer(p.weight);
  uint base = row * p.cols;  // rows * cols < 2^32 (the wrapper checks)
  precise float sum = 0.0;
  for (uint i = thread; i < p.cols; i += THREADS) {
    float w = weight.data[base + i];
    sum += w * w;
  }
  sums[thread] = sum;
  barrier();
  for (uint half_size = THREADS / 2; half_size > 0; half_size /= 2) {
    if (thread < half_size) sums[thread] += sums[thread + half_size];
    barrier();
  }
  if (thread == 0) {
    float norm = sqrt(sums[0]);
    if (p.init != 0) FloatBuffer(p.magnitude).data[row] = norm;
    float magnitude = FloatBuffer(p.magnitude).data[row];
    FloatBuffer(p.inv_norm).data[row] = 1.0 / norm;
    FloatBuffer(p.scale).data[row] = magnitude / norm;
  }
}
