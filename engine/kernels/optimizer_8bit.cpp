#include "engine/kernels/optimizer_8bit.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/base/error.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
#include "engine/kernels/dynamic_maps.inc"

struct Maps {
  std::array<float, 256> values[2];
  Maps() {
    for (size_t i = 0; i < 256; i++) {
      values[0][i] = std::bit_cast<float>(dynamic_map_signed_bits[i]);
      values[1][i] = std::bit_cast<float>(dynamic_map_unsigned_bits[i]);
    }
  }
};
const Maps& maps() {
  static const Maps instance;
  return instance;
}
}  // namespace

const float* dynamic_map(DynamicMap map) { return maps().values[static_cast<uint32_t>(map)].data(); }
const uint32_t* dynamic_map_thresholds(DynamicMap map) {
  return map == DynamicMap::signed_map ? dynamic_map_signed_thresholds : dynamic_map_unsigned_thresholds;
}

uint64_t blockwise_8bit_absmax_offset(uint64_t count) { return (count + 3) / 4 * 4; }

uint64_t adamw_8bit_state_bytes(uint64_t count) {
  if (count < blockwise_8bit_min_elements) return 4 * count;
  return blockwise_8bit_absmax_offset(count) + 4ull * ceil_div(count, blockwise_8bit_block);
}

void adamw_8bit(Recorder& recorder, const TensorList& list, const BufferRange& step_state, const AdamWConfig& config) {
  for (const OptimizerTensor& tensor : list.tensors())
    VKT_ASSERT(tensor.states_8bit == (tensor.count >= blockwise_8bit_min_elements),
               "adamw_8bit: tensors of at least 4096 elements (and only those) keep 8-bit states");
  record_adamw_shader(recorder, list, step_state, config, "adamw_8bit");
}

void quantize_blockwise_8bit(Recorder& recorder, const BufferRange& x, const BufferRange& codes,
                             const BufferRange& absmax, const BufferRange& dequantized, uint32_t n, DynamicMap map) {
  uint32_t blocks = ceil_div(n, blockwise_8bit_block);
  require_bytes(x, 4ull * n, "quantize_blockwise_8bit", "x");
  require_bytes(codes, 4ull * ceil_div(n, 4), "quantize_blockwise_8bit", "codes");
  require_bytes(absmax, 4ull * blocks, "quantize_blockwise_8bit", "absmax");
  require_bytes(dequantized, 4ull * n, "quantize_blockwise_8bit", "dequantized");
  struct {
    uint64_t x, codes, absmax, dequantized;
    uint32_t n, map;
  } push{x.address, codes.address, absmax.address, dequantized.address, n, static_cast<uint32_t>(map)};
  record_dispatch(recorder, {.shader = "quantize_blockwise_8bit",
                             .push = push,
                             .grid = grid_1d(blocks, 1),
                             .reads = {x},
                             .writes = {codes, absmax, dequantized}});
}

}  // namespace vkt::kernels

namespace vkt::ref {

using kernels::blockwise_8bit_block;
using kernels::DynamicMap;

void quantize_blockwise_8bit(const float* x, size_t n, DynamicMap map, uint8_t* codes, float* absmax) {
  const uint32_t* thresholds = kernels::dynamic_map_thresholds(map);
  for (size_t begin = 0, block = 0; begin < n; begin += blockwise_8bit_block, block++) {
    size_t end = std::min<size_t>(n, begin + blockwise_8bit_block);
    float largest = 0.0f;
    for (size_t i = begin; i < end; i++) largest = std::max(largest, std::fabs(x[i]));
    absmax[block] = largest;
    // volatile: each step rounded to fp32 on its own, as bnb's AVX2 intrinsics do (no fma contraction)
    volatile float inverse = 1.0f / largest;
    for (size_t i = begin; i < end; i++) {
      if (largest == 0.0f) {
        codes[i] = 0;
        continue;
      }
      volatile float v = std::clamp(x[i] * inverse, -1.0f, 1.0f);
      volatile float shifted = v + 1.0f;
      volatile float half = shifted * 0.5f;
      volatile float scaled = half * 65535.0f;
      volatile float t = scaled + 0.5f;
      uint32_t index = static_cast<uint32_t>(t);
      codes[i] = static_cast<uint8_t>(std::upper_bound(thresholds, thresholds + 255, index) - thresholds);
    }
  }
}

void dequantize_blockwise_8bit(const uint8_t* codes, const float* absmax, size_t n, DynamicMap map, float* out) {
  const float* values = kernels::dynamic_map(map);
  for (size_t i = 0; i < n; i++) out[i] = values[codes[i]] * absmax[i / blockwise_8bit_block];
}

void adamw_8bit(float* param, const float* grad, uint8_t* exp_avg, uint8_t* exp_avg_sq, size_t n, uint32_t step,
                double lr, const kernels::AdamWConfig& config, float grad_multiplier) {
  const float beta1 = static_cast<float>(config.beta1), beta2 = static_cast<float>(config.beta2);
  const float one_minus_beta1 = static_cast<float>(1.0 - config.beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - config.beta2);
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(config.beta1, double(step))));
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(config.beta2, double(step))));
  const float decay = static_cast<float>(1.0 - lr * config.weight_decay);
  const bool first_step = step <= 1;
  const bool quantized = n >= kernels::blockwise_8bit_min_elements;
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  const size_t offset = kernels::blockwise_8bit_absmax_offset(n);
  if (!first_step && quantized) {
    dequantize_blockwise_8bit(exp_avg, reinterpret_cast<const float*>(exp_avg + offset), n, DynamicMap::signed_map,
                              m.data());
    dequantize_blockwise_8bit(exp_avg_sq, reinterpret_cast<const float*>(exp_avg_sq + offset), n,
                              DynamicMap::unsigned_map, v.data());
  } else if (!first_step) {
    std::memcpy(m.data(), exp_avg, 4 * n);
    std::memcpy(v.data(), exp_avg_sq, 4 * n);
  }
  for (size_t i = 0; i < n; i++) {
    volatile float g = grad[i] * grad_multiplier;
    volatile float m_decayed = m[i] * beta1;
    m[i] = std::fma(one_minus_beta1, g, m_decayed);
    volatile float v_decayed = v[i] * beta2;
    volatile float g_scaled = one_minus_beta2 * g;
    v[i] = std::fma(g_scaled, g, v_decayed);  // torch's addcmul_: one fma
    volatile float x = param[i];
    if (config.weight_decay > 0.0f) x = x * decay;
    if (quantized) {
      volatile float root = std::sqrt(v[i]);
      volatile float scaled_root = root / bias_correction2_sqrt;
      volatile float denominator = scaled_root + config.eps;
      volatile float numerator = -step_size * m[i];
      volatile float update = numerator / denominator;
      x = x + update;
    } else {
      volatile float step_size_32 = -(step_size * bias_correction2_sqrt);
      volatile float eps_32 = config.eps * bias_correction2_sqrt;
      volatile float root = std::sqrt(v[i]);
      volatile float denominator = root + eps_32;
      volatile float update = m[i] / denominator;
      x = std::fma(update, step_size_32, x);
    }
    param[i] = x;
  }
  if (quantized) {
    quantize_blockwise_8bit(m.data(), n, DynamicMap::signed_map, exp_avg, reinterpret_cast<float*>(exp_avg + offset));
    quantize_blockwise_8bit(v.data(), n, DynamicMap::unsigned_map, exp_avg_sq,
                            reinterpret_cast<float*>(exp_avg_sq + offset));
  } else {
    std::memcpy(exp_avg, m.data(), 4 * n);
    std::memcpy(exp_avg_sq, v.data(), 4 * n);
  }
}

}  // namespace vkt::ref
