#pragma once
// A LoRA layer's thin product in the dispatch of the base product it shares an input with
// (implemented with the other products in matmul.cpp, shaders/matmul.comp SECOND_PRODUCT). Its column
// tiles follow the base product's in the tile order, so the input is read for both while it is in
// cache, and one launch does both (engine/model/linear.cpp):
//   matmul_nt_lora_a: C = A·Wᵀ (+ bias) (shapes as matmul_nt)     and T = A·Rᵀ, R = LoRA's A (rank, K)
//   matmul_nn_lora_b: C = A·W + beta·C (shapes as matmul_nn)      and T = alpha·A·R, R = LoRA's B (N, rank)
// R dense fp32, T (M, rank) in c_type, both row-major. T is bit-identical to its own matmul_nt /
// matmul_nn on the same device (every output summed over the inner dimension in the same order).
// T gets its own dispatch instead where the base product runs on the cooperative-matrix body, where
// a CPU driver would split the two inner dimensions differently (matmul.cpp: dense W in matmul_nn), or
// with VKT_DISABLE_FUSED_LORA_A=1; with autotuning on, fused and separate are timed and the faster kept.
#include "engine/kernels/matmul.hpp"

namespace vkt::kernels {

struct SecondProduct {
  BufferRange weight;  // R: (cols, K) for nt, (N, cols) for nn; fp32, row-major
  BufferRange c;       // T: (M, cols) in the product's c_type, row-major; overwritten
  uint32_t cols = 0;
  float alpha = 1.0f;  // T's scale (nt: 1)
};
void matmul_nt_lora_a(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
                      DType c_type, uint32_t m, uint32_t n, uint32_t k, const BufferRange* bias,
                      const SecondProduct& lora_a);
void matmul_nn_lora_b(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
                      DType c_type, uint32_t m, uint32_t n, uint32_t k, float beta, const SecondProduct& lora_b);

}  // namespace vkt::kernels
