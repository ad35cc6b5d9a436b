#pragma once
// Element-wise kernels over fp32 vectors; scale, softcap and add also over activations stored
// as `act` (engine/kernels/act_storage.hpp; arithmetic in fp32).
#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// y = alpha * x + beta * y. x, y: (n) act.
void axpby(Recorder& recorder, const BufferRange& x, const BufferRange& y, uint32_t n, float alpha, float beta,
           DType act = DType::f32);

// x *= s, or x *= s * factor[0] when `factor` is given: a (1) fp32 value in device memory, for
// per-step values of a replayed recording (e.g. the gradient-clipping coefficient).
// x: (n) act, in place.
void scale(Recorder& recorder, const BufferRange& x, uint32_t n, float s, const BufferRange* factor = nullptr,
           DType act = DType::f32);

// x = cap * tanh(x / cap) in place (Gemma 2's final_logit_softcapping on output logits; training
// caps inside cross_entropy, with the gradient). x: (n) act; cap > 0.
void softcap(Recorder& recorder, const BufferRange& x, uint32_t n, float cap, DType act = DType::f32);

// out = a + b. a, b, out: (n) act; out may be a or b.
void add(Recorder& recorder, const BufferRange& a, const BufferRange& b, const BufferRange& out, uint32_t n,
         DType act = DType::f32);

// Per-channel scale (IA3): y[r, c] = x[r, c] * scale[c]. x, y: (rows, cols) fp32, y may be x;
// scale: (cols) fp32. With rows = 1 and cols = n: the element-wise product y = x * scale.
void scale_channels(Recorder& recorder, const BufferRange& x, const BufferRange& scale, const BufferRange& y,
                    uint32_t rows, uint32_t cols);
// Its backward for dy: (rows, cols) fp32. dx = dy * scale (dx may be dy; an empty dx skips it);
// d_scale (cols) fp32 (+)= column sums of dy * x (accumulate: added to). product: (rows, cols) fp32
// scratch; workspace: sum_rows_workspace_bytes(rows, cols).
void scale_channels_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& x, const BufferRange& scale,
                             const BufferRange& dx, const BufferRange& d_scale, const BufferRange& product,
                             const BufferRange& workspace, uint32_t rows, uint32_t cols, bool accumulate);

}  // namespace vkt::kernels

namespace vkt::ref {
void axpby(const float* x, float* y, size_t n, float alpha, float beta);
void scale(float* x, size_t n, float s, const float* factor = nullptr);
void softcap(float* x, size_t n, float cap);
void add(const float* a, const float* b, float* out, size_t n);
void scale_channels(const float* x, const float* scale, float* y, size_t rows, size_t cols);
// Overwrites dx (if non-null) and d_scale.
void scale_channels_backward(const float* dy, const float* x, const float* scale, float* dx, float* d_scale,
                             size_t rows, size_t cols);
}
