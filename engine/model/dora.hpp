#pragma once
// DoRA (PEFT's LoraConfig(use_dora=True), peft 0.21.2 tuners/lora/dora.py): a LoRA layer whose
// weight is split into a direction and a learned magnitude per output row,
//   W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row,   y = x·W'ᵀ + b,
// computed as PEFT's forward does: y = g ⊙ (x·Wᵀ + s·(x·Aᵀ)·Bᵀ) + b with g = m / ‖W + s·B·A‖, the
// norm taken over each output row of the dense (dequantized: NF4, int, GGUF) base weight and
// detached from the gradient ("weight_norm.detach()", DoRA paper §4.3): A and B get gradients
// through the numerator only. m starts at ‖W‖ (B = 0). Saved as
// "base_model.model.model.layers.{i}.self_attn.q_proj.lora_magnitude_vector" (out) beside
// lora_A/lora_B; adapter_config.json "use_dora": true. Merging (PEFT's merge): W ← g ⊙ (W + s·B·A).
// With lora_dropout, PEFT's dropout path: y = x·Wᵀ + b + (g - 1) ⊙ (x_d·Wᵀ) + g ⊙ s·(x_d·Aᵀ)·Bᵀ, x_d = dropout(x).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/linear.hpp"
#include "engine/spec/model_shape.hpp"

namespace vkt::model {

std::string dora_buffer_name(const spec::ModelShape& shape, uint32_t layer, spec::Module module);
std::string dora_peft_name(const spec::ModelShape& shape, uint32_t layer, spec::Module module);

// The norm, scales and (init) the magnitude of layer.lora: scratch.dora_weight = W + s·B·A, then
// kernels::dora_norm into scratch.dora_scales ([scale | inv_norm | d scale], 3·out fp32).
void dora_weight_norm(Recorder& recorder, const Linear& layer, const LinearScratch& scratch, bool init);

// linear_forward / linear_lora_intermediate / linear_backward of a layer whose lora has a magnitude.
// The forward keeps v = x·Wᵀ + s·t·Bᵀ in scratch.dora_v (when planned: training) for d m.
void dora_linear_forward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& y,
                         uint32_t rows, const LinearScratch& scratch);
void dora_linear_intermediate(Recorder& recorder, const Linear& layer, const BufferRange& x, uint32_t rows,
                              const LinearScratch& scratch);
void dora_linear_backward(Recorder& recorder, const Linear& layer, const BufferRange& x, const BufferRange& dy,
                          const BufferRange& dx, bool accumulate_dx, uint32_t rows, const LinearScratch& scratch);

// Merging into a dense weight that already holds W + s·B·A (out, in): each row times m / ‖row‖.
void dora_merge_rows(std::vector<float>& weight, const std::vector<float>& magnitude, uint64_t in);

}  // namespace vkt::model

namespace vkt::ref {
// CPU reference of a DoRA layer (dense fp32 W), fp64: y = g ⊙ (x·Wᵀ + s·x·Aᵀ·Bᵀ) + b; with a dropout
// mask `keep` (rows, in) (0 or 1/(1-p); nullptr: none), PEFT's dropout path (dora.hpp above).
void dora_linear_forward(const float* x, const float* w, const float* bias, const float* a, const float* b,
                         const float* magnitude, const float* keep, float* y, uint32_t rows, uint32_t in, uint32_t out,
                         uint32_t rank, float scale);
// Overwrites dx (rows, in), grad_a, grad_b, grad_magnitude (out); the norm detached as PEFT does.
void dora_linear_backward(const float* x, const float* w, const float* a, const float* b, const float* magnitude,
                          const float* keep, const float* dy, float* dx, float* grad_a, float* grad_b,
                          float* grad_magnitude, uint32_t rows, uint32_t in, uint32_t out, uint32_t rank, float scale);
}  // namespace vkt::ref
