#version 460
#extension GL_GOOGLE_include_directive : require
// adamw_8bit: bitsandbytes' AdamW(optim_bits=8) over every tensor of a TensorList, as bnb 0.50.2's
// CPU kernels compute it (backends/cpu/ops.py), one workgroup per chunk:
// * tensors of at least MIN_8BIT_ELEMENTS (bnb's min_8bit_size, 4096): states kept as blockwise
//   8-bit codes + one fp32 absmax per 256-block (state0 = exp_avg with the signed dynamic map,
//   state1 = exp_avg_sq with the unsigned one; codes first, absmax at byte align4(count)):
//     m = dequant(m); v = dequant(v);  m = fma(1 - b1, g, m * b1);  v = fma((1 - b2) * g, g, v * b2)
//     denom = sqrt(v) / sqrt(bc2) + eps;  p *= 1 - lr * wd (wd > 0);  p += ((-lr / bc1) * m) / denom
//     new absmax per block, m and v requantized (blockwise_8bit.glsl)
// * smaller tensors: fp32 states and bnb's 32-bit update
//     denom = sqrt(v) + eps * sqrt(bc2);  p *= 1 - lr * wd (wd > 0);  p += (m / denom) * (-lr * sqrt(bc2) / bc1)
// torch's add_(g, alpha) and addcmul_ are fmas on the CPU (checked against torch 2.15); these keep
// that order, with exact_fma (blockwise_8bit.glsl) where Vulkan's fma() may round twice. At step 1 the states start
// from zero; a NaN/Inf step (StepState.flags) changes nothing.
#include "common.glsl"
#include "multi_tensor.glsl"
#include "step_state.glsl"
#include "blockwise_8bit.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t table;       // TensorList entries: param, grad, state0 = exp_avg, state1 = exp_avg_sq
  uint64_t step_state;  // StepState
  uint tensor_count;
  uint chunk_count;
  uint chunk_elements;
  float beta1;
  float beta2;
  float one_minus_beta1;
  float one_minus_beta2;
  float eps;
  float weight_decay;
} p;  // adamw.comp's push constants (kernels::record_adamw_shader)

const uint MIN_8BIT_ELEMENTS = 4096u;  // bnb's min_8bit_size (kernels::blockwise_8bit_min_elements)

shared uint packed_codes[256];  // per thread: m code | v code << 8

void main() {
  blockwise_load_maps();  // before any return: it holds a barrier
  uint chunk = chunk_index();
  if (chunk >= p.chunk_count) return;
  TensorTable table = TensorTable(p.table);
  TensorEntry tensor = table.entries[find_tensor(table, p.tensor_count, chunk)];
  StepStateBuffer state = StepStateBuffer(p.step_state);
  if ((state.flags & STEP_FLAG_NON_FINITE) != 0u) return;
  bool first_step = state.step <= 1u;
  float lr = state.learning_rate * tensor.lr_scale;
  float step_size = state.adam_step_size * tensor.lr_scale;  // lr / bc1
  float bias_correction2_sqrt = state.adam_bias_correction2_sqrt;
  float multiplier = state.grad_scale * state.clip_coefficient;
  float weight_decay = p.weight_decay * tensor.decay_scale;
  precise float decay = 1.0 - lr * weight_decay;

  FloatBuffer param = FloatBuffer(tensor.param);
  FloatBuffer grad = FloatBuffer(tensor.grad);
  uint begin = (chunk - tensor.first_chunk) * p.chunk_elements;
  uint end = min(begin + p.chunk_elements, tensor.count);
  uint t = gl_LocalInvocationID.x;

  if (tensor.count < MIN_8BIT_ELEMENTS) {
    FloatBuffer exp_avg = FloatBuffer(tensor.state0);
    FloatBuffer exp_avg_sq = FloatBuffer(tensor.state1);
    precise float step_size_32 = -(step_size * bias_correction2_sqrt);
    precise float eps_32 = p.eps * bias_correction2_sqrt;
    for (uint i = begin + t; i < end; i += 256u) {
      precise float g = grad.data[i] * multiplier;
      precise float m = first_step ? 0.0 : exp_avg.data[i];
      precise float v = first_step ? 0.0 : exp_avg_sq.data[i];
      m = exact_fma(p.one_minus_beta1, g, m * p.beta1);
      v = exact_fma(p.one_minus_beta2 * g, g, v * p.beta2);
      precise float x = param.data[i];
      if (weight_decay > 0.0) x = x * decay;
      precise float update = m / (sqrt(v) + eps_32);
      x = exact_fma(update, step_size_32, x);
      exp_avg.data[i] = m;
      exp_avg_sq.data[i] = v;
      param.data[i] = x;
    }
    return;
  }

  uint absmax_offset = (tensor.count + 3u) & ~3u;  // bytes of codes before the absmax
  UintBuffer m_codes = UintBuffer(tensor.state0);
  UintBuffer v_codes = UintBuffer(tensor.state1);
  FloatBuffer m_absmax = FloatBuffer(tensor.state0 + uint64_t(absmax_offset));
  FloatBuffer v_absmax = FloatBuffer(tensor.state1 + uint64_t(absmax_offset));
  // Chunks hold whole blocks (chunk_elements is a multiple of 256), so this loop is uniform.
  for (uint block_begin = begin; block_begin < end; block_begin += 256u) {
    uint block = block_begin / 256u;
    uint i = block_begin + t;
    bool inside = i < end;
    precise float m = 0.0, v = 0.0;
    if (inside) {
      precise float g = grad.data[i] * multiplier;
      if (!first_step) {
        uint shift = 8u * (i & 3u);
        m = blockwise_value((m_codes.data[i >> 2] >> shift) & 255u, m_absmax.data[block], 0u);
        v = blockwise_value((v_codes.data[i >> 2] >> shift) & 255u, v_absmax.data[block], 1u);
      }
      m = exact_fma(p.one_minus_beta1, g, m * p.beta1);
      v = exact_fma(p.one_minus_beta2 * g, g, v * p.beta2);
      precise float denominator = sqrt(v) / bias_correction2_sqrt + p.eps;
      precise float x = param.data[i];
      if (weight_decay > 0.0) x = x * decay;
      x = x + ((-step_size) * m) / denominator;
      param.data[i] = x;
    }
    float m_max = blockwise_absmax(m);
    float v_max = blockwise_absmax(v);
    uint m_code = !inside || m_max == 0.0 ? 0u : blockwise_code(m, blockwise_reciprocal(m_max), 0u);
    uint v_code = !inside || v_max == 0.0 ? 0u : blockwise_code(v, blockwise_reciprocal(v_max), 1u);
    packed_codes[t] = m_code | (v_code << 8);
    barrier();
    if (t < 64u && block_begin + 4u * t < end) {
      uint a = packed_codes[4u * t], b = packed_codes[4u * t + 1u], c = packed_codes[4u * t + 2u],
           d = packed_codes[4u * t + 3u];
      m_codes.data[block_begin / 4u + t] = (a & 255u) | ((b & 255u) << 8) | ((c & 255u) << 16) | ((d & 255u) << 24);
      v_codes.data[block_begin / 4u + t] = (a >> 8) | ((b >> 8) << 8) | ((c >> 8) << 16) | ((d >> 8) << 24);
    }
    if (t == 0u) {
      m_absmax.data[block] = m_max;
      v_absmax.data[block] = v_max;
    }
    barrier();  // packed_codes is reused by the next block
  }
}
