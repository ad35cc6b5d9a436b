#pragma once
// The activations of PEFT's prompt-learning encoders, in place: ReLU for P-tuning's prompt encoder
// (MLP head: Linear-ReLU-Linear-ReLU-Linear), tanh for prefix tuning's prefix encoder
// (prefix_projection: Linear-Tanh-Linear). The forward keeps only its output, which the backward
// reads (y > 0 exactly where x > 0; d tanh(x)/dx = 1 - tanh(x)²).
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

// x = max(x, 0). x: (n) fp32, in place.
void relu(Recorder& recorder, const BufferRange& x, uint32_t n);
// dy = dy where y > 0, else 0 (torch's relu gradient, 0 at 0). y: (n) fp32, the forward's output;
// dy: (n) fp32, in place (it becomes dx).
void relu_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n);
// x = tanh(x). x: (n) fp32, in place.
void tanh(Recorder& recorder, const BufferRange& x, uint32_t n);
// dy = dy * (1 - y²). y: (n) fp32, the forward's output; dy: (n) fp32, in place (it becomes dx).
void tanh_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n);

}  // namespace vkt::kernels

namespace vkt::ref {
void relu(float* x, size_t n);
void relu_backward(const float* y, float* dy, size_t n);
void tanh(float* x, size_t n);
void tanh_backward(const float* y, float* dy, size_t n);
}  // namespace vkt::ref
