#pragma once
// bitsandbytes' 8-bit AdamW (HF's --optim adamw_8bit) and its blockwise dynamic quantization,
// bit-exact with bitsandbytes 0.50.2's CPU quantize_blockwise (shaders/blockwise_8bit.glsl says how).
//
// State layout of a tensor of `count` >= blockwise_8bit_min_elements elements, one buffer per state:
//   bytes [0, align4(count)):       (count) uint8 codes, padded to 4 bytes
//   then (ceil(count / 256)) fp32:   absmax per block of 256
// exp_avg uses the signed dynamic map, exp_avg_sq the unsigned one (bnb's "dynamic"/"udynamic").
// Smaller tensors keep two fp32 states, as bnb (min_8bit_size 4096) does.
#include <cstddef>
#include <cstdint>

#include "engine/kernels/optimizer.hpp"

namespace vkt::kernels {

constexpr uint32_t blockwise_8bit_block = 256;
constexpr uint32_t blockwise_8bit_min_elements = 4096;  // bnb's min_8bit_size
enum class DynamicMap : uint32_t { signed_map = 0, unsigned_map = 1 };
// Bytes of one state of a tensor of `count` elements (fp32 below the 8-bit minimum).
uint64_t adamw_8bit_state_bytes(uint64_t count);
uint64_t blockwise_8bit_absmax_offset(uint64_t count);  // align4(count)

// The map as fp32 (256 values, ascending) and bnb's CPU quantizer thresholds (255).
const float* dynamic_map(DynamicMap map);
const uint32_t* dynamic_map_thresholds(DynamicMap map);

// One AdamW step, bnb's 8-bit AdamW, over every tensor of the list (state0 = exp_avg, state1 =
// exp_avg_sq in the layout above; the tensors must have OptimizerTensor::states_8bit set exactly
// when count >= blockwise_8bit_min_elements). Reads the same StepState fields as adamw.
void adamw_8bit(Recorder& recorder, const TensorList& list, const BufferRange& step_state, const AdamWConfig& config);

// Quantizes x (n fp32) blockwise: codes (ceil(n/4) words, element 4w+j in byte j), absmax
// (ceil(n/256) fp32) and the round trip dequantized (n fp32). For tests of the quantizer above.
void quantize_blockwise_8bit(Recorder& recorder, const BufferRange& x, const BufferRange& codes,
                             const BufferRange& absmax, const BufferRange& dequantized, uint32_t n, DynamicMap map);

}  // namespace vkt::kernels

namespace vkt::ref {
// bnb 0.50.2's CPU quantize_blockwise (block 256) and dequantize_blockwise, bit for bit.
void quantize_blockwise_8bit(const float* x, size_t n, kernels::DynamicMap map, uint8_t* codes, float* absmax);
void dequantize_blockwise_8bit(const uint8_t* codes, const float* absmax, size_t n, kernels::DynamicMap map,
                               float* out);
// One step of bnb's 8-bit AdamW on one tensor, in fp32 in bnb's CPU order (the shader's order).
// exp_avg / exp_avg_sq: adamw_8bit_state_bytes(n) bytes each. lr: already times the tensor's
// lr_scale; config.weight_decay already times its decay_scale.
void adamw_8bit(float* param, const float* grad, uint8_t* exp_avg, uint8_t* exp_avg_sq, size_t n, uint32_t step,
                double lr, const kernels::AdamWConfig& config, float grad_multiplier = 1.0f);
}  // namespace vkt::ref
