#pragma once
// matmul_nt with a LoRA layer's down product in the same dispatch (implemented with the other products
// in matmul.cpp, shaders/matmul.comp SECOND_PRODUCT): besides C = A·Wᵀ (+ bias) (the base product,
// shapes as matmul_nt), writes T = A·Rᵀ with R (rank, K) dense fp32 (LoRA's A) and T (M, rank) c_type,
// row-major: T's column tiles follow C's in the tile order, so A (the layer input) is read for both
// while it is in cache, and one launch does both (engine/model/linear.cpp). T is bit-identical to
// matmul_nt(A, R) on the same device: every output is summed over K in the same order. Where the base
// product runs on the cooperative-matrix body, or VKT_DISABLE_FUSED_LORA_A=1, T gets its own dispatch.
#include "engine/kernels/matmul.hpp"

namespace vkt::kernels {

struct SecondProduct {
  BufferRange weight;  // (cols, K) fp32, row-major
  BufferRange c;       // (M, cols) in the product's c_type, row-major
  uint32_t cols = 0;
};
void matmul_nt_lora_a(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
                      DType c_type, uint32_t m, uint32_t n, uint32_t k, const BufferRange* bias,
                      const SecondProduct& lora_a);

}  // namespace vkt::kernels
