#pragma once
// Element-wise kernels over fp32 vectors.
#include "engine/kernels/launch.hpp"

namespace vkt::kernels {

// y = alpha * x + beta * y. x, y: (n) fp32.
void axpby(Recorder& recorder, const BufferRange& x, const BufferRange& y, uint32_t n, float alpha, float beta);

}  // namespace vkt::kernels

namespace vkt::ref {
void axpby(const float* x, float* y, size_t n, float alpha, float beta);
}
