#pragma once
// matmul_nt with the SwiGLU of an MLP in its epilogue (implemented with the other products in
// matmul.cpp, shaders/matmul.comp SWIGLU_EPILOGUE): besides C = alpha * A·Wᵀ + beta * C (the up
// projection, shapes as matmul_nt), writes h[i,j] = silu(gate[i,j]) * C[i,j] from C as stored, exactly
// what kernels::swiglu computes from C, in the same dispatch: one launch, and one read of C and one
// write of it, fewer (engine/model/fused_mlp.hpp). gate, h: (M, N) c_type, laid out as C; h may be
// gate. No bias, one batch entry.
#include "engine/kernels/matmul.hpp"

namespace vkt::kernels {

struct SwigluEpilogue {
  BufferRange gate, h;  // (M, N) c_type
};
void matmul_nt_swiglu(Recorder& recorder, const BufferRange& a, DType a_type, const WeightRef& w, const BufferRange& c,
                      DType c_type, uint32_t m, uint32_t n, uint32_t k, float alpha, float beta,
                      const SwigluEpilogue& swiglu);

}  // namespace vkt::kernels
