#include "engine/kernels/optimizer_bf16.hpp"

#include <cstring>
#include <vector>

#include "engine/base/half.hpp"
#include "engine/kernels/convert.hpp"
#include "engine/kernels/random.hpp"

namespace vkt::kernels {

void adamw_bf16_sr(Recorder& recorder, const TensorList& list, const BufferRange& step_state,
                   const AdamWConfig& config) {
  record_adamw_shader(recorder, list, step_state, config, "adamw_bf16_sr");
}

void copy_masters(Recorder& recorder, const std::vector<MasterCopy>& copies, DType weight_type) {
  for (const MasterCopy& copy : copies) {
    if (weight_type == DType::bf16)
      convert_f32_to_bf16(recorder, copy.master, copy.weight, copy.count);
    else
      convert_f32_to_f16(recorder, copy.master, copy.weight, copy.count);
  }
}

}  // namespace vkt::kernels

namespace vkt::ref {

uint16_t stochastic_round_bf16(float x, uint32_t random) {
  uint32_t bits = 0;
  std::memcpy(&bits, &x, 4);
  return static_cast<uint16_t>((bits + (random & 0xFFFFu)) >> 16);
}

uint32_t rounding_bits(uint32_t seed, uint32_t step, uint32_t tensor, uint32_t index) {
  return random::random_bits4(seed, kernels::stream_rounding, step, tensor, index >> 2)[index & 3];
}

void adamw_bf16_sr(uint16_t* param, const float* grad, float* exp_avg, float* exp_avg_sq, size_t n, uint32_t step,
                   double lr, const kernels::AdamWConfig& config, uint32_t seed, uint32_t tensor,
                   float grad_multiplier) {
  std::vector<float> values(n);
  for (size_t i = 0; i < n; i++) values[i] = bf16_to_float(param[i]);
  adamw(values.data(), grad, exp_avg, exp_avg_sq, n, step, lr, config, grad_multiplier);
  for (size_t i = 0; i < n; i++)
    param[i] = stochastic_round_bf16(values[i], rounding_bits(seed, step, tensor, static_cast<uint32_t>(i)));
}

}  // namespace vkt::ref
