#pragma once
// Tanh for prefix tuning's prefix encoder (PEFT's PrefixEncoder: Linear-Tanh-Linear). In place: the
// forward keeps only its output, which the backward reads (d tanh(x)/dx = 1 - tanh(x)²).
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

// x = tanh(x). x: (n) fp32, in place.
void tanh(Recorder& recorder, const BufferRange& x, uint32_t n);
// dy = dy * (1 - y²). y: (n) fp32, the forward's output; dy: (n) fp32, in place (it becomes dx).
void tanh_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n);

}  // namespace vkt::kernels

namespace vkt::ref {
void tanh(float* x, size_t n);
void tanh_backward(const float* y, float* dy, size_t n);
}  // namespace vkt::ref
