#version 460
#extension GL_GOOGLE_include_directive : require
// grad *= factor over every tensor of a TensorList (one workgroup per chunk).
#include "common.glsl"
#include "multi_tensor.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t table;  // TensorList entries: grad
  uint tensor_count;
  uint chunk_count;
  uint chunk_elements;
  float factor;
} p;

void main() {
  uint chunk = chunk_index();
  if (chunk >= p.chunk_count) return;
  TensorTable table = TensorTable(p.table);
  TensorEntry tensor = table.entries[find_tensor(table, p.tensor_count, chunk)];
  FloatBuffer grad = FloatBuffer(tensor.grad);
  uint begin = (chunk - tensor.first_chunk) * p.chunk_elements;
  uint end = min(begin + p.chunk_elements, tensor.count);
  for (uint i = begin + gl_LocalInvocationID.x; i < end; i += 256) grad.data[i] = grad.data[i] * p.factor;
}
