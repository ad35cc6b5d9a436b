#pragma once
// Quantization-aware training's fake quantization (issue 17 item 5; the --qat flag is not wired
// yet): w -> dequantize(quantize(w)) in the block formats `vktune quantize` writes (nf4 without
// double quantization, int8, int4, int4_asym), recorded as two device passes so a training step
// can replay it. Its backward is the straight-through estimator: the gradient passes unchanged.
#include <cstdint>
#include <vector>

#include "engine/kernels/quantize.hpp"

namespace vkt::quant {

// Bytes of the codes and of the per-block scales (zeros: one byte per block, int4_asym only) that
// fake_quantize needs for n elements in blocks of block_size.
uint64_t fake_quant_codes_bytes(kernels::WeightFormat format, uint64_t n, uint32_t block_size);
uint64_t fake_quant_scales_bytes(uint64_t n, uint32_t block_size);

// out: (n) fp32 = dequantize(quantize(w)); w: (n) fp32 (out may be w). codes, scales, zeros: scratch
// of the sizes above (zeros empty unless int4_asym).
void fake_quantize(kernels::Recorder& recorder, const kernels::BufferRange& w, uint64_t n, kernels::WeightFormat format,
                   uint32_t block_size, const kernels::BufferRange& codes, const kernels::BufferRange& scales,
                   const kernels::BufferRange& zeros, const kernels::BufferRange& out);

}  // namespace vkt::quant

namespace vkt::ref {
// The CPU reference: engine/quant's quantize then dequantize (no double quantization).
std::vector<float> fake_quantize(const float* w, uint32_t rows, uint32_t cols, kernels::WeightFormat format,
                                 uint32_t block_size);
}  // namespace vkt::ref
