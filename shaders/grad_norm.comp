#version 460
#extension GL_GOOGLE_include_directive : require
// Global gradient norm, stage 1: the sum of squares of StepState.grad_scale * g over each chunk
// of each tensor of a TensorList, one workgroup per chunk, into partials[chunk]. fp32, fixed order
// (strided per-thread sums, then a tree in shared memory): the same bits on every run.
// The scale applies before squaring, as torch unscales (GradScaler.unscale_) before
// clip_grad_norm_: a loss-scaled gradient (fp16 runs multiply the loss by up to 2^127) whose square
// would overflow fp32 gives its true, finite norm, so only an Inf/NaN element flags the step.
// grad_scale 1 (fp32 runs) leaves every bit as before.
#include "common.glsl"
#include "multi_tensor.glsl"
#include "step_state.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t table;     // TensorList entries
  uint64_t partials;  // (chunk_count) fp32, written
  uint64_t step_state;  // StepState: reads grad_scale
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
  const float scale = StepStateBuffer(p.step_state).grad_scale;
  float sum = 0.0;
  for (uint i = begin + gl_LocalInvocationID.x; i < end; i += 256) {
    float g = grad.data[i] * scale;
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
