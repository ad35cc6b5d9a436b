#include "engine/kernels/relu.hpp"

#include <cmath>

#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
struct ActivationPush {
  uint64_t x, dy;
  uint32_t n;
};

// One in-place activation shader (relu, tanh) or its backward (`dy` non-null).
void record_activation(Recorder& recorder, const char* shader, const BufferRange& x, const BufferRange* dy,
                       uint32_t n) {
  require_bytes(x, uint64_t(n) * 4, shader, dy ? "y" : "x");
  if (dy) require_bytes(*dy, uint64_t(n) * 4, shader, "dy");
  const BufferRange written = dy ? *dy : x;
  ActivationPush push{x.address, dy ? dy->address : 0, n};
  record_dispatch(recorder, {.shader = shader,
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = dy ? std::vector<BufferRange>{x, *dy} : std::vector<BufferRange>{x},
                             .writes = {written}});
}
}  // namespace

void relu(Recorder& recorder, const BufferRange& x, uint32_t n) { record_activation(recorder, "relu", x, nullptr, n); }

void relu_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n) {
  record_activation(recorder, "relu_backward", y, &dy, n);
}

void tanh(Recorder& recorder, const BufferRange& x, uint32_t n) { record_activation(recorder, "tanh", x, nullptr, n); }

void tanh_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n) {
  record_activation(recorder, "tanh_backward", y, &dy, n);
}

}  // namespace vkt::kernels

namespace vkt::ref {
void relu(float* x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
}
void relu_backward(const float* y, float* dy, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!(y[i] > 0)) dy[i] = 0.0f;
}
void tanh(float* x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = static_cast<float>(std::tanh(double(x[i])));
}
void tanh_backward(const float* y, float* dy, size_t n) {
  for (size_t i = 0; i < n; i++) dy[i] = static_cast<float>(double(dy[i]) * (1.0 - double(y[i]) * y[i]));
}
}  // namespace vkt::ref
