#pragma once
// DoRA's two kernels (PEFT use_dora=True; the layer is composed in engine/model/dora.cpp): the
// per-output-row norm of W + s·B·A with the magnitude's scales, and the scaled output.
#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// weight: (rows, cols) fp32, W + s·B·A formed densely. inv_norm[o] = 1/‖weight[o, :]‖, scale[o] =
// magnitude[o]/‖weight[o, :]‖; with init, magnitude[o] = ‖weight[o, :]‖ first (PEFT's initial
// magnitude). magnitude, inv_norm, scale: (rows) fp32.
void dora_norm(Recorder& recorder, const BufferRange& weight, const BufferRange& magnitude, const BufferRange& inv_norm,
               const BufferRange& scale, uint32_t rows, uint32_t cols, bool init = false);

// y[r, c] = v[r, c]·scale[c] (+ bias[c]). v, y: (rows, cols) fp32, y may be v; scale, bias: (cols)
// fp32; bias may be nullptr.
void dora_output(Recorder& recorder, const BufferRange& v, const BufferRange& scale, const BufferRange* bias,
                 const BufferRange& y, uint32_t rows, uint32_t cols);

}  // namespace vkt::kernels

namespace vkt::ref {
// fp64 sums; the same outputs as the kernels.
void dora_norm(const float* weight, float* magnitude, float* inv_norm, float* scale, uint32_t rows, uint32_t cols,
               bool init);
void dora_output(const float* v, const float* scale, const float* bias, float* y, uint32_t rows, uint32_t cols);
}  // namespace vkt::ref
