#include "engine/model/qat.hpp"

#include <string>

#include "engine/base/error.hpp"
#include "engine/kernels/quantize.hpp"
#include "engine/quant/fake_quant.hpp"

namespace vkt::model {

using kernels::DType;

namespace {
// The layer without QAT whose weight is the dense fq(...) (lora kept for its gradients).
Linear with_weight(const Linear& layer, const BufferRange& weight) {
  Linear plain = layer;
  plain.weight = kernels::dense_f32(weight);
  plain.qat = kernels::WeightFormat::f32;
  return plain;
}
}  // namespace

BufferRange qat_weight(Recorder& r, const Linear& layer, const LinearScratch& scratch) {
  const uint64_t n = uint64_t(layer.out) * layer.in;
  VKT_ASSERT(n * 4 <= scratch.qat_weight.bytes, "QAT scratch too small: fq(W) of " + std::to_string(layer.out) + "x" +
                                                   std::to_string(layer.in) + " in " + std::to_string(scratch.qat_weight.bytes));
  VKT_ASSERT(!layer.ia3 && !(layer.lora && (layer.lora->magnitude.bytes || layer.lora->dropout > 0)),
             "QAT goes without IA3, DoRA and LoRA dropout");
  BufferRange weight = scratch.qat_weight;
  weight.bytes = n * 4;
  kernels::dequantize(r, layer.weight, n, weight, n % 8 != 0);  // a copy for fp32 weights
  if (layer.lora) {                                             // M = W + s·B (out, r)·A (r, in): the merged weight
    const LoraParams& lora = *layer.lora;
    kernels::matmul_nn(r, lora.b, DType::f32, kernels::dense_f32(lora.a), weight, DType::f32, layer.out, lora.rank,
                       layer.in, lora.scale, 1.0f);
  }
  quant::fake_quantize(r, weight, n, layer.qat, layer.qat_block, scratch.qat_codes, scratch.qat_scales,
                       scratch.qat_zeros, weight);
  return weight;
}

void qat_linear_forward(Recorder& r, const Linear& layer, const BufferRange& x, const BufferRange& y, uint32_t rows,
                        const LinearScratch& scratch) {
  Linear quantized = with_weight(layer, qat_weight(r, layer, scratch));
  quantized.lora = nullptr;  // y = x·fq(M)ᵀ + b: the LoRA term is inside M
  linear_forward(r, quantized, x, y, rows, scratch);
  // t = x·Aᵀ for dB in the backward (training; linear_lora_intermediate never reads W).
  if (layer.lora && scratch.lora_t.bytes) linear_lora_intermediate(r, layer, x, rows, scratch);
}

void qat_linear_backward(Recorder& r, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                         const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch) {
  const BufferRange weight = qat_weight(r, layer, scratch);
  const Linear quantized = with_weight(layer, weight);
  // Full (or a frozen module): dx = dy·fq(W); dW += dyᵀ·x, the straight-through estimator.
  if (!layer.lora) return linear_backward(r, quantized, x, dy, dx, accumulate_dx, rows, scratch);
  // LoRA: dx = dy·fq(M) alone (the LoRA term's dt·A is inside M); dA, dB as plain LoRA's (STE).
  if (dx.bytes)
    kernels::matmul_nn(r, dy, layer.act, quantized.weight, dx, layer.act, rows, layer.out, layer.in, 1.0f,
                       accumulate_dx ? 1.0f : 0.0f);
  linear_backward(r, quantized, x, dy, BufferRange{}, false, rows, scratch);
}

}  // namespace vkt::model
