#include "engine/kernels/relu.hpp"

#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
struct ReluPush {
  uint64_t x, dy;
  uint32_t n;
};
}  // namespace

void relu(Recorder& recorder, const BufferRange& x, uint32_t n) {
  require_bytes(x, uint64_t(n) * 4, "relu", "x");
  ReluPush push{x.address, 0, n};
  record_dispatch(recorder, {.shader = "relu", .push = push, .grid = grid_1d(n, 256), .reads = {x}, .writes = {x}});
}

void relu_backward(Recorder& recorder, const BufferRange& y, const BufferRange& dy, uint32_t n) {
  require_bytes(y, uint64_t(n) * 4, "relu_backward", "y");
  require_bytes(dy, uint64_t(n) * 4, "relu_backward", "dy");
  ReluPush push{y.address, dy.address, n};
  record_dispatch(recorder,
                  {.shader = "relu_backward", .push = push, .grid = grid_1d(n, 256), .reads = {y, dy}, .writes = {dy}});
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
}  // namespace vkt::ref
