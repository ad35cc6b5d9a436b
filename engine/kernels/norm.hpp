#pragma once
// RMSNorm (HF LlamaRMSNorm, computed in fp32): y = (weight + weight_offset) * (x * rstd),
// rstd = 1 / sqrt(mean(x^2) + eps) per row. Tokens are rows, features are columns.
// weight_offset is 0 for Llama and 1 for Gemma (Gemma*RMSNorm: x * rstd * (1 + w), in fp32).
#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// x: (rows, cols) act; weight: (cols) fp32; y: (rows, cols) act, may be x (in place);
// act: the storage type of x and y (engine/kernels/act_storage.hpp), arithmetic in fp32;
// rstd: (rows) fp32, saved for rmsnorm_backward. cols up to any size (a workgroup loops).
void rmsnorm(Recorder& recorder, const BufferRange& x, const BufferRange& weight, const BufferRange& y,
             const BufferRange& rstd, uint32_t rows, uint32_t cols, float eps, float weight_offset = 0.0f,
             DType act = DType::f32);

// Workspace bytes rmsnorm_backward needs when it computes the weight gradient.
uint64_t rmsnorm_backward_workspace_bytes(uint32_t rows, uint32_t cols);

// dy: (rows, cols) act; x, weight, rstd: as given to / saved by rmsnorm; act: as for rmsnorm.
// dx: (rows, cols) act: overwritten, or added to when `accumulate_dx` (the residual stream's
//   gradient); may be dy when not accumulating.
// d_weight: (cols) fp32 or nullptr (frozen norm): the gradient of weight (the offset does not change it),
//   ADDED to (gradients accumulate over
//   micro-batches; clear it before the first), summed over rows deterministically.
// workspace: rmsnorm_backward_workspace_bytes(rows, cols) bytes (unused without d_weight).
void rmsnorm_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& x, const BufferRange& weight,
                      const BufferRange& rstd, const BufferRange& dx, const BufferRange* d_weight,
                      const BufferRange& workspace, uint32_t rows, uint32_t cols, bool accumulate_dx = false,
                      float weight_offset = 0.0f, DType act = DType::f32);

}  // namespace vkt::kernels

namespace vkt::ref {
// Double-precision references. rstd may be nullptr.
void rmsnorm(const float* x, const float* weight, float* y, float* rstd, uint32_t rows, uint32_t cols, float eps,
             float weight_offset = 0.0f);
// Recomputes rstd from x (in double); d_weight may be nullptr and is added to.
void rmsnorm_backward(const float* dy, const float* x, const float* weight, float* dx, float* d_weight, uint32_t rows,
                      uint32_t cols, float eps, bool accumulate_dx = false, float weight_offset = 0.0f);
}  // namespace vkt::ref
