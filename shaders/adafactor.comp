#version 460
#extension GL_GOOGLE_include_directive : require
// Adafactor (HF transformers' optimization.Adafactor as Trainer's --optim adafactor runs it:
// no first moment, no relative step, no parameter scaling) over every tensor of a TensorList,
// one workgroup per tensor (engine/kernels/adafactor.hpp has the formulas). Steps:
//   1. accumulators: 2-D: each thread owns rows (then columns) and averages G = g^2 + eps1 over
//      them; 1-D: v elementwise. beta2t and 1 - beta2t come from StepState (host, double).
//   2. 2-D: mean of the row accumulator (shared-memory tree).
//   3. rms of u = rsqrt(row / row_mean) * rsqrt(col) * g (or rsqrt(v) * g), shared tree.
//   4. p += p * (-wd * lr);  p -= u / max(1, rms / clip_threshold) * lr.
#include "common.glsl"
#include "multi_tensor.glsl"
#include "step_state.glsl"
layout(local_size_x = 256) in;

// The accumulators are written and then read by other threads of the workgroup: coherent.
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CoherentFloats { float data[]; };
// Mirrors kernels::AdafactorTable::Entry (std430, 24 bytes).
struct AdafactorEntry {
  uint64_t state0;  // (rows) row accumulator, or (count) v when unfactored
  uint64_t state1;  // (cols) column accumulator; 0 when unfactored
  uint rows;
  uint cols;        // 0: unfactored (1-D)
};
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer AdafactorTable { AdafactorEntry entries[]; };

layout(push_constant) uniform Push {
  uint64_t table;       // TensorList entries (param, grad; no states)
  uint64_t states;      // (tensors) AdafactorEntry
  uint64_t step_state;  // StepState: adam_step_size = beta2t, adam_bias_correction2_sqrt = 1 - beta2t
  uint tensor_count;
  float eps1;
  float clip_threshold;
  float weight_decay;
} p;

shared float sums[256];

// The workgroup's sum of `value` (every thread gets it); fixed tree order.
float workgroup_sum(float value) {
  uint t = gl_LocalInvocationID.x;
  sums[t] = value;
  barrier();
  for (uint stride = 128u; stride > 0u; stride >>= 1) {
    if (t < stride) sums[t] += sums[t + stride];
    barrier();
  }
  float total = sums[0];
  barrier();
  return total;
}

void main() {
  uint index = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  if (index >= p.tensor_count) return;  // whole workgroups only: the barriers stay uniform
  TensorEntry tensor = TensorTable(p.table).entries[index];
  AdafactorEntry entry = AdafactorTable(p.states).entries[index];
  StepStateBuffer state = StepStateBuffer(p.step_state);
  if ((state.flags & STEP_FLAG_NON_FINITE) != 0u) return;
  uint t = gl_LocalInvocationID.x, n = tensor.count;
  bool first_step = state.step <= 1u;  // accumulators start from zero, whatever the buffers hold
  float beta2t = state.adam_step_size, one_minus_beta2t = state.adam_bias_correction2_sqrt;
  float multiplier = state.grad_scale * state.clip_coefficient;
  float lr = state.learning_rate * tensor.lr_scale;
  FloatBuffer param = FloatBuffer(tensor.param);
  FloatBuffer grad = FloatBuffer(tensor.grad);
  CoherentFloats first = CoherentFloats(entry.state0), second = CoherentFloats(entry.state1);
  uint rows = entry.rows, cols = entry.cols;
  bool factored = cols > 0u;

  float row_mean = 1.0;
  if (factored) {
    for (uint r = t; r < rows; r += 256u) {
      float sum = 0.0;
      for (uint c = 0u; c < cols; c++) {
        float g = grad.data[r * cols + c] * multiplier;
        sum += g * g + p.eps1;
      }
      first.data[r] = (first_step ? 0.0 : first.data[r]) * beta2t + one_minus_beta2t * (sum / float(cols));
    }
    for (uint c = t; c < cols; c += 256u) {
      float sum = 0.0;
      for (uint r = 0u; r < rows; r++) {
        float g = grad.data[r * cols + c] * multiplier;
        sum += g * g + p.eps1;
      }
      second.data[c] = (first_step ? 0.0 : second.data[c]) * beta2t + one_minus_beta2t * (sum / float(rows));
    }
    memoryBarrierBuffer();
    barrier();
    float partial = 0.0;
    for (uint r = t; r < rows; r += 256u) partial += first.data[r];
    row_mean = workgroup_sum(partial) / float(rows);
  } else {
    for (uint i = t; i < n; i += 256u) {
      float g = grad.data[i] * multiplier;
      first.data[i] = (first_step ? 0.0 : first.data[i]) * beta2t + one_minus_beta2t * (g * g + p.eps1);
    }
    memoryBarrierBuffer();
    barrier();
  }
  float squares = 0.0;
  for (uint i = t; i < n; i += 256u) {
    float g = grad.data[i] * multiplier;
    float u = factored ? inversesqrt(first.data[i / cols] / row_mean) * inversesqrt(second.data[i % cols]) * g
                       : inversesqrt(first.data[i]) * g;
    squares += u * u;
  }
  float rms = sqrt(workgroup_sum(squares) / float(n));
  float divisor = max(rms / p.clip_threshold, 1.0);
  float decay = -(p.weight_decay * tensor.decay_scale) * lr;
  for (uint i = t; i < n; i += 256u) {
    float g = grad.data[i] * multiplier;
    float u = factored ? inversesqrt(first.data[i / cols] / row_mean) * inversesqrt(second.data[i % cols]) * g
                       : inversesqrt(first.data[i]) * g;
    u = u / divisor * lr;
    float x = param.data[i];
    if (decay != 0.0) x = x + x * decay;
    param.data[i] = x - u;
  }
}
