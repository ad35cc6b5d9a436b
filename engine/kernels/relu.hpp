#pragma once
// ReLU for P-tuning's prompt encoder (PEFT's MLP head: Linear-ReLU-Linear-ReLU-Linear). In place:
// the forward keeps only its output, which the backward reads (y > 0 exactly where x > 0).
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

// x = max(x, 0). x: (n) fp32, in place.
void relu(Recorder& recorder, const BufferRange& x, uint32_t n);
// dy = dy where y > 0, else 0 (torch's relu gradient, 0 at 0). y: (n) fp32, the forward's output;
// dy: (n) fp32, in place (it becomes dx).
void relu_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n);

}  // namespace vkt::kernels

namespace vkt::ref {
void relu(float* x, size_t n);
void relu_backward(const float* y, float* dy, size_t n);
}  // namespace vkt::ref
