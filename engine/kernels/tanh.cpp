#include "engine/kernels/tanh.hpp"

#include <cmath>

#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
struct TanhPush {
  uint64_t x, dy;
  uint32_t n;
};
}  // namespace

void tanh(Recorder& recorder, const BufferRange& x, uint32_t n) {
  require_bytes(x, uint64_t(n) * 4, "tanh", "x");
  TanhPush push{x.address, 0, n};
  record_dispatch(recorder, {.shader = "tanh", .push = push, .grid = grid_1d(n, 256), .reads = {x}, .writes = {x}});
}

void tanh_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n) {
  require_bytes(y, uint64_t(n) * 4, "tanh_backward", "y");
  require_bytes(dy, uint64_t(n) * 4, "tanh_backward", "dy");
  TanhPush push{y.address, dy.address, n};
  record_dispatch(recorder,
                  {.shader = "tanh_backward", .push = push, .grid = grid_1d(n, 256), .reads = {y, dy}, .writes = {dy}});
}

}  // namespace vkt::kernels

namespace vkt::ref {
void tanh(float* x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = static_cast<float>(std::tanh(double(x[i])));
}
void tanh_backward(const float* y, float* dy, size_t n) {
  for (size_t i = 0; i < n; i++) dy[i] = static_cast<float>(double(dy[i]) * (1.0 - double(y[i]) * y[i]));
}
}  // namespace vkt::ref
