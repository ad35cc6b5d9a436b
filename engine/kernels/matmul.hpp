#pragma once
// Matrix products: the linear layers' forward and both halves of their backward, batched
// for attention-style products. fp32 accumulation always; A and C may be stored as fp16/bf16
// (fp16 only when the device has 16-bit storage); the weight operand may be quantized and is
// then dequantized in the load stage (never materialized in global memory).
//
// Shapes (row-major; M = tokens, N = out_features, K = in_features for a linear layer):
//   matmul_nt:  C[M,N] = alpha * A[M,K] · W[N,K]ᵀ + beta * C (+ bias[N])   forward   Y = X·Wᵀ
//   matmul_nn:  C[M,K] = alpha * A[M,N] · W[N,K]  + beta * C               backward  dX = dY·W
//   matmul_tn:  C[N,K] = alpha * A[M,N]ᵀ · B[M,K] + beta * C               backward  dW = dYᵀ·X
// beta = 0 ignores the previous contents of C (even NaN). Batched: `batch` independent
// products, each operand advanced by its batch stride (in elements) per batch.
#include "engine/kernels/launch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

struct MatmulBatch {
  uint32_t count = 1;
  uint64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between consecutive batches
};

void matmul_nt(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
               DType c_type, uint32_t m, uint32_t n, uint32_t k, float alpha = 1.0f, float beta = 0.0f,
               const BufferRange* bias = nullptr, MatmulBatch batch = {});

void matmul_nn(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
               DType c_type, uint32_t m, uint32_t n, uint32_t k, float alpha = 1.0f, float beta = 0.0f,
               MatmulBatch batch = {});

void matmul_tn(Recorder& recorder, const BufferRange& a, DType a_type, const BufferRange& b, DType b_type,
               const BufferRange& c, uint32_t m, uint32_t n, uint32_t k, float alpha = 1.0f, float beta = 0.0f,
               MatmulBatch batch = {});

// Convenience: a dense fp32 weight.
inline WeightRef dense_f32(const BufferRange& data) {
  WeightRef w;
  w.data = data;
  return w;
}

}  // namespace vkt::kernels

namespace vkt::ref {
// CPU references with fp64 accumulation; dense fp32 operands (tests dequantize first).
void matmul_nt(const float* a, const float* w, float* c, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta,
               const float* bias = nullptr);
void matmul_nn(const float* a, const float* w, float* c, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta);
void matmul_tn(const float* a, const float* b, float* c, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta);
}  // namespace vkt::ref
