#version 460
#extension GL_GOOGLE_include_directive : require
// Global gradient norm, stage 2 (one workgroup): adds the per-chunk partial sums in a fixed
// order (Kahan-compensated per thread, then a tree), and writes StepState.grad_norm and the
// clip coefficient of torch.nn.utils.clip_grad_norm_:
//   clip = clamp(max_norm * reciprocal(norm + 1e-6), max = 1)   (torch's float / tensor)
// max_norm <= 0 disables clipping (clip = 1). The finite check of every step rides on this pass:
// a NaN/Inf norm (or loss, when `loss` is given) sets StepState.flags, which the optimizers obey.
#include "common.glsl"
#include "step_state.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t partials;    // (chunk_count) fp32
  uint64_t step_state;  // StepState: writes grad_norm, clip_coefficient and flags
  uint64_t loss;        // (1) fp32, the step's summed loss, checked for NaN/Inf; 0: no loss check
  uint chunk_count;
  float max_norm;
} p;

shared float sums[256];

void main() {
  uint t = gl_LocalInvocationID.x;
  FloatBuffer partials = FloatBuffer(p.partials);
  // `precise` keeps the compiler from reassociating the compensation away.
  precise float sum = 0.0;
  precise float compensation = 0.0;
  for (uint i = t; i < p.chunk_count; i += 256) {
    precise float term = partials.data[i] - compensation;
    precise float next = sum + term;
    compensation = (next - sum) - term;
    sum = next;
  }
  sums[t] = sum;
  barrier();
  for (uint width = 128; width > 0; width >>= 1) {
    if (t < width) sums[t] += sums[t + width];
    barrier();
  }
  if (t == 0) {
    StepStateBuffer state = StepStateBuffer(p.step_state);
    float norm = sqrt(sums[0]);  // of grad_scale * g: stage 1 applied the scale
    state.grad_norm = norm;
    float clip = 1.0;
    if (p.max_norm > 0.0) {
      float coefficient = p.max_norm * (1.0 / (norm + 1e-6));
      clip = isnan(coefficient) ? coefficient : min(coefficient, 1.0);  // NaN propagates, as torch.clamp
    }
    state.clip_coefficient = clip;
    uint flags = 0u;
    if (isnan(norm) || isinf(norm)) flags |= STEP_FLAG_NON_FINITE_GRADIENT;
    if (p.loss != 0ul) {
      float loss = FloatBuffer(p.loss).data[0];
      if (isnan(loss) || isinf(loss)) flags |= STEP_FLAG_NON_FINITE_LOSS;
    }
    state.flags |= flags;
  }
}
