#pragma once
// Matrix products: the linear layers' forward and both halves of their backward, batched
// for attention-style products. fp32 accumulation always; A and C may be stored as fp16/bf16
// (only when the device has 16-bit storage buffers); the weight operand may be quantized and is
// then dequantized in the load stage (never materialized in global memory).
//
// Shapes (row-major; M = tokens, N = out_features, K = in_features for a linear layer):
//   matmul_nt:  C[M,N] = alpha * A[M,K] · W[N,K]ᵀ + beta * C (+ bias[N])   forward   Y = X·Wᵀ
//   matmul_nn:  C[M,K] = alpha * A[M,N] · W[N,K]  + beta * C               backward  dX = dY·W
//   matmul_tn:  C[N,K] = alpha * A[M,N]ᵀ · B[M,K] + beta * C               backward  dW = dYᵀ·X
// Storage: a in a_type, C in c_type (matmul_tn: fp32, it is a weight gradient), W in w.format:
// dense fp32/fp16/bf16, or quantized (nf4 with or without double quant, int8, int4, int4_asym;
// layouts in types.hpp), dequantized in the load stage with shaders/quant.glsl, bit-identical to
// quant::dequantize, so the result is the dense product with the dequantized weight up to fp32
// summation order. Quantized arrays must be 4-byte aligned. bias (N) fp32, the same for every
// batch entry.
// beta = 0 ignores the previous contents of C (even NaN). Batched: `batch` independent
// products, each operand advanced by its batch stride (in elements) per batch; for a quantized W,
// stride_b counts elements of the flattened weight (batch entry b starts at element b*stride_b).
// On CPU drivers an inner dimension above 2^17 is summed in several dispatches (lavapipe's loop
// limit, see matmul.cpp), each adding into C: a 16-bit C is then rounded between them.
#include <string>
#include <vector>

#include "engine/kernels/dispatch.hpp"
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

// How the matmul kernels split a (rows x cols) output on this device; chosen from the device's
// capabilities and the output shape, exposed for benchmarks and tests. Two shader bodies:
// - tiled (GPUs): a workgroup computes tile_rows x tile_cols outputs through shared memory,
//   tile_inner at a time; each thread keeps thread_rows x thread_cols accumulators;
// - direct (CPU drivers such as lavapipe, fixed subgroup size): one subgroup per workgroup
//   computes thread_rows x (subgroup_size * thread_cols) outputs straight from global memory;
//   `transposed` puts the longer output dimension across the lanes by computing Cᵀ = Rᵀ·Lᵀ.
// Kill switches: VKT_DISABLE_MATMUL_DIRECT=1 (tiled body everywhere), VKT_DISABLE_MATMUL_VEC4=1
// (scalar loads), VKT_DISABLE_MATMUL_LARGE_TILES=1 (the smallest tiles).
struct MatmulTiling {
  bool direct = false;
  bool transposed = false;  // direct only: rows and cols swapped, C written transposed
  uint32_t tile_rows = 128, tile_cols = 128, tile_inner = 16;
  uint32_t thread_rows = 8, thread_cols = 8;
  uint32_t subgroup_size = 0;  // direct only
  uint32_t workgroup_size() const {
    return direct ? subgroup_size : (tile_rows / thread_rows) * (tile_cols / thread_cols);
  }
  uint32_t shared_bytes() const { return direct ? 0 : (tile_rows + tile_cols) * tile_inner * 4; }
  std::string name() const;  // "direct 32x32/32x4", "tiled 128x128/8x8": the autotune cache's names
};
// `allow_transpose`: false when the R operand must stay R (quantized weights are dequantized in
// the R load stage only).
MatmulTiling matmul_tiling(vk::Context& context, uint32_t rows, uint32_t cols, bool allow_transpose = true);
// The tilings autotuning times for such an output (engine/kernels/autotune.hpp): matmul_tiling's
// first, then the other tile shapes of the same body. They split the work differently but sum every
// output over P in the same order, so each gives bit-identical results.
std::vector<MatmulTiling> matmul_candidates(vk::Context& context, uint32_t rows, uint32_t cols,
                                            bool allow_transpose = true);

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
