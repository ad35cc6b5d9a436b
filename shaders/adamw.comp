#version 460
//! variant bf16_sr: -DPARAM_BF16_SR
#extension GL_GOOGLE_include_directive : require
// AdamW over every tensor of a TensorList (one workgroup per chunk), in torch.optim.AdamW's order:
//   g = grad * grad_scale * clip_coefficient
//   p *= 1 - lr * wd                                   (decoupled weight decay, first)
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
//   p += -(lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// lr / bc1 and sqrt(bc2) come from StepState (computed on the host in double, like torch);
// at step 1 the moments start from zero (torch creates them then), whatever the buffers hold.
// Variant bf16_sr (--pure-bf16): the parameters are bf16 bit patterns with no fp32 master copy;
// the fp32 result is stochastically rounded to bf16: its 16 low bits are added to 16 random bits
// (Philox, key (seed, stream 4), counter (element / 4, step, tensor, 0), engine/kernels/
// optimizer_bf16.hpp) before truncation, so it rounds up with probability (low bits) / 2^16:
// unbiased, and reproducible for a seed.
#include "common.glsl"
#include "multi_tensor.glsl"
#include "step_state.glsl"
#ifdef PARAM_BF16_SR
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#include "convert.glsl"
#include "random.glsl"
const uint STREAM_ROUNDING = 4u;
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Bf16Buffer { uint16_t data[]; };
#endif
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t table;       // TensorList entries: param, grad, state0 = exp_avg, state1 = exp_avg_sq
  uint64_t step_state;  // StepState
  uint tensor_count;
  uint chunk_count;
  uint chunk_elements;
  float beta1;
  float beta2;
  float one_minus_beta1;  // 1 - beta1 in double, then rounded (as torch passes alpha)
  float one_minus_beta2;
  float eps;
  float weight_decay;
} p;

void main() {
  uint chunk = chunk_index();
  if (chunk >= p.chunk_count) return;
  TensorTable table = TensorTable(p.table);
  uint tensor_index = find_tensor(table, p.tensor_count, chunk);
  TensorEntry tensor = table.entries[tensor_index];
  StepStateBuffer state = StepStateBuffer(p.step_state);
  if ((state.flags & STEP_FLAG_NON_FINITE) != 0u) return;  // a NaN/Inf step leaves weights and moments as they were
  bool first_step = state.step <= 1u;
  float lr = state.learning_rate * tensor.lr_scale;
  float step_size = state.adam_step_size * tensor.lr_scale;
  float bias_correction2_sqrt = state.adam_bias_correction2_sqrt;
  float multiplier = state.grad_scale * state.clip_coefficient;
  float weight_decay = p.weight_decay * tensor.decay_scale;
  float decay = 1.0 - lr * weight_decay;

#ifdef PARAM_BF16_SR
  Bf16Buffer param = Bf16Buffer(tensor.param);
#else
  FloatBuffer param = FloatBuffer(tensor.param);
#endif
  FloatBuffer grad = FloatBuffer(tensor.grad);
  FloatBuffer exp_avg = FloatBuffer(tensor.state0);
  FloatBuffer exp_avg_sq = FloatBuffer(tensor.state1);
  uint begin = (chunk - tensor.first_chunk) * p.chunk_elements;
  uint end = min(begin + p.chunk_elements, tensor.count);
  for (uint i = begin + gl_LocalInvocationID.x; i < end; i += 256) {
    float g = grad.data[i] * multiplier;
#ifdef PARAM_BF16_SR
    float x = bf16_bits_to_float(uint(param.data[i]));
#else
    float x = param.data[i];
#endif
    if (weight_decay != 0.0) x = x * decay;
    float m = first_step ? 0.0 : exp_avg.data[i];
    float v = first_step ? 0.0 : exp_avg_sq.data[i];
    m = m * p.beta1 + p.one_minus_beta1 * g;
    v = v * p.beta2 + p.one_minus_beta2 * g * g;
    float denominator = sqrt(v) / bias_correction2_sqrt + p.eps;
    x = x + (-step_size) * (m / denominator);
    exp_avg.data[i] = m;
    exp_avg_sq.data[i] = v;
#ifdef PARAM_BF16_SR
    uint random = random_bits4(state.rng_seed, STREAM_ROUNDING, state.step, tensor_index, i >> 2)[i & 3u];
    param.data[i] = uint16_t((floatBitsToUint(x) + (random & 0xFFFFu)) >> 16);
#else
    param.data[i] = x;
#endif
  }
}
