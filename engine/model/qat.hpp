#pragma once
// Quantization-aware training (--qat nf4|int4|int8; issue 17 item 5). The forward of a linear layer
// uses fq(W) = dequantize(quantize(W)) (quant::fake_quantize: the block formats `vktune quantize`
// writes, nf4 without double quantization) instead of W; with LoRA, fq(W + s·B·A), the merged
// product that `vktune export` + `vktune quantize` will deploy. The backward is the straight-through
// estimator (fq's derivative taken as 1):
//   full:  dx = dy·fq(W),  dW += dyᵀ·x  (the gradient w.r.t. fq(W), applied to W)
//   LoRA:  dx = dy·fq(M),  dM = dyᵀ·x  =>  dB += s·dyᵀ·(x·Aᵀ), dA += (s·dy·B)ᵀ·x   (M = W + s·B·A)
// fq(·) is recomputed in the backward (one (out, in) scratch serves every layer). No dropout, DoRA
// or IA3 with it (the config refuses them). With --bf16/--fp16 the scratch stays fp32: dequantize
// widens a 16-bit W (full finetuning's weights, or LoRA's --dtype base) into it, and the matmuls read
// the 16-bit activations (Linear::act) against that fp32 fq(·); gradients of W, A and B stay fp32.
#include "engine/model/linear.hpp"

namespace vkt::model {

// scratch.qat_weight = fq(W [+ s·B·A]) of layer (out, in) fp32; returns that range.
BufferRange qat_weight(Recorder& recorder, const Linear& layer, const LinearScratch& scratch);

// linear_forward / linear_backward of a layer with layer.qat set (linear.cpp dispatches here).
void qat_linear_forward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& y,
                        uint32_t rows, const LinearScratch& scratch);
void qat_linear_backward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                         const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch);

}  // namespace vkt::model
