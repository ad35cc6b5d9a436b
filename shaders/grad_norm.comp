#version 460
#extension GL_GOOGLE_include_directive : require
// Global gradient norm, stage 1: the sum of squares of each chunk of each tensor of a
// TensorList, one workgroup per chunk, into partials[chunk]. fp32, fixed order (strided
// per-thread sums, then a tree in shared memory): the same bits on every run.
#include "common.glsl"
#include "multi_tensor.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t table;     // TensorList entries
  uint64_t partials;  // (chunk_count) fp32, written
  uint tensor_count;
  uint chunk_count;
  uint chunk_elements;
} p;

shared float sums[256];

void main() {
  uint chunk = chunk_index();
  if (chunk >= p.chunk_count) return;  // whole workgroups only: the barriers below stay uniform
  TensorTable table = TensorTable(p.table);
  TensorEntry tensor = table.entries[find_tensor(table, p.tensor_count, chunk)];
  uint begin = (chunk - tensor.first_chunk) * p.chunk_elements;
  uint end = min(begin + p.chunk_elements, tensor.count);
  FloatBuffer grad = FloatBuffer(tensor.grad);
  float sum = 0.0;
  for (uint i = begin + gl_LocalInvocationID.x; i < end; i += 256) {
    float g = grad.data[i];
    sum += g * g;
  }
  uint t = gl_LocalInvocationID.x;
  sums[t] = sum;
  barrier();
  for (uint width = 128; width > 0; width >>= 1) {
    if (t < width) sums[t] += sums[t + width];
    barrier();
  }
  if (t == 0) FloatBuffer(p.partials).data[chunk] = sums[0];
}
