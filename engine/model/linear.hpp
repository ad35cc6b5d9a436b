#pragma once
// A linear layer of the model: a frozen (or fully trained) base weight in any format, an
// optional bias, and an optional LoRA adapter, with PEFT's semantics:
//   y = x·Wᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ        s = alpha/r (or alpha/√r with rsLoRA)
// Forward and backward are compositions of the matmul, dropout and reduction kernels.
#include <cstdint>

#include "engine/kernels/matmul.hpp"

namespace vkt::model {

using kernels::BufferRange;
using kernels::Recorder;

struct LoraParams {
  BufferRange a;       // (r, in) fp32   lora_A.weight
  BufferRange b;       // (out, r) fp32  lora_B.weight
  BufferRange grad_a;  // (r, in) fp32, accumulated over micro-batches
  BufferRange grad_b;  // (out, r) fp32, accumulated
  uint32_t rank = 0;
  float scale = 0;         // alpha / r, or alpha / sqrt(r) with rsLoRA
  float dropout = 0;       // probability on the LoRA input
  uint32_t rng_layer = 0;  // dropout mask key: unique per (layer, module)
  // DoRA (engine/model/dora.hpp): the magnitude vector; empty for plain LoRA.
  BufferRange magnitude;       // (out) fp32   lora_magnitude_vector
  BufferRange grad_magnitude;  // (out) fp32, accumulated; empty for inference
};

// IA3 (PEFT's IA3Layer, engine/model/ia3.hpp): a learned vector scaling the layer's output
// (y = (x·Wᵀ + b) ⊙ l) or, for a feedforward module, its input (y = (x ⊙ l)·Wᵀ + b).
struct Ia3Params {
  BufferRange l;       // (out) fp32, or (in) fp32 when feedforward   ia3_l
  BufferRange grad_l;  // the same shape, accumulated; empty for inference
  bool feedforward = false;
};

struct Linear {
  kernels::WeightRef weight;  // (out, in), any format
  BufferRange bias;           // (out) fp32; empty when the layer has none
  uint32_t in = 0, out = 0;
  BufferRange grad_weight;  // (out, in) fp32, full finetuning only (weight must be fp32)
  BufferRange grad_bias;    // (out) fp32, full finetuning only
  const LoraParams* lora = nullptr;
  // Storage of the activations: x, y, dx, dy and the LoRA intermediates t, dt and dropout(x)
  // (spec::RunSettings::activation_dtype); the matmuls accumulate in fp32 and every weight,
  // weight gradient and LoRA parameter stays fp32.
  kernels::DType act = kernels::DType::f32;
  const Ia3Params* ia3 = nullptr;  // IA3 instead of LoRA (never both)
  // QAT (engine/model/qat.hpp): the forward uses fake_quantize(W [+ s·B·A]) in this format, in
  // blocks of qat_block; f32: off. Never with IA3 or DoRA.
  kernels::WeightFormat qat = kernels::WeightFormat::f32;
  uint32_t qat_block = 64;
};

// Buffers a linear layer's forward/backward uses besides its input and output.
struct LinearScratch {
  BufferRange lora_t;            // (rows, r) Linear::act: dropout(x)·Aᵀ saved by the forward for the backward
  BufferRange grad_lora_t;       // (rows, r) Linear::act scratch
  BufferRange dropout_x;         // (rows, in) Linear::act scratch, when dropout > 0
  BufferRange step_state;        // kernels::StepState (dropout's RNG step)
  BufferRange reduce_workspace;  // kernels::sum_rows_workspace_bytes(rows, out) for bias gradients
  // IA3: z = x·Wᵀ + b (rows, out) saved by the forward of an output-scaled module; two (rows,
  // widest) fp32 scratches (the scaled input, then the backward's products and d(input)).
  BufferRange ia3_z, ia3_scratch, ia3_grad;
  // DoRA: v = x·Wᵀ + s·t·Bᵀ (rows, out) fp32 saved by the forward (training); the scales (3·out)
  // fp32 [m/‖W'‖ | 1/‖W'‖ | d scale] saved with it; W' = W + s·B·A (out, in) fp32 scratch; the
  // backward's dv and product (2·rows·out) fp32 scratch.
  BufferRange dora_v, dora_scales, dora_weight, dora_grad;
  // QAT: fq(W [+ s·B·A]) (out, in) fp32 scratch, and fake_quantize's codes, scales and (int4_asym)
  // zeros scratch (quant::fake_quant_codes_bytes / fake_quant_scales_bytes of the largest weight).
  BufferRange qat_weight, qat_codes, qat_scales, qat_zeros;
};

// y: (rows, out), overwritten. x: (rows, in). Both stored as layer.act.
void linear_forward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& y, uint32_t rows,
                    const LinearScratch& scratch);

// Only the LoRA intermediate t = dropout(x)·Aᵀ into scratch.lora_t (rows, r): what the backward
// needs when a layer is recomputed without its output (gradient checkpointing).
void linear_lora_intermediate(Recorder& recorder, const Linear& layer, const BufferRange& x, uint32_t rows,
                              const LinearScratch& scratch);

// The base product y = x·Wᵀ (+ bias) and, with LoRA, linear_lora_intermediate: one dispatch for both
// when the LoRA input is x itself (no dropout), kernels/matmul_lora_a.hpp. Plain and LoRA layers only
// (not IA3, DoRA or QAT). y: (rows, out), overwritten; bias: (out) fp32 or nullptr.
void linear_base_and_lora_intermediate(Recorder& recorder, const Linear& layer, const BufferRange& x,
                                       const BufferRange& y, uint32_t rows, const BufferRange* bias,
                                       const LinearScratch& scratch);

// Gradients for dy: (rows, out). dx: (rows, in), overwritten (or added to when
// accumulate_dx); an empty dx range skips the input gradient. LoRA gradients and full-finetuning gradients are added to (accumulation).
// x must be the input the forward saw; scratch.lora_t the t the forward saved.
void linear_backward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                     const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch);

}  // namespace vkt::model

namespace vkt::ref {
// CPU reference of the same layer (dense fp32 weight, dropout mask given as 0/1 keep values
// already scaled by 1/(1-p), or nullptr for no dropout). fp64 accumulation.
void lora_linear_forward(const float* x, const float* w, const float* bias, const float* a, const float* b,
                         const float* keep, float* y, uint32_t rows, uint32_t in, uint32_t out, uint32_t rank,
                         float scale);
// Overwrites dx, grad_a, grad_b, grad_w (if non-null), grad_bias (if non-null).
void lora_linear_backward(const float* x, const float* w, const float* a, const float* b, const float* keep,
                          const float* dy, float* dx, float* grad_a, float* grad_b, float* grad_w, float* grad_bias,
                          uint32_t rows, uint32_t in, uint32_t out, uint32_t rank, float scale);
}  // namespace vkt::ref
