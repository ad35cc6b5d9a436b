#include "engine/kernels/elementwise.hpp"

namespace vkt::kernels {

void axpby(Recorder& recorder, const BufferRange& x, const BufferRange& y, uint32_t n, float alpha, float beta) {
  struct {
    uint64_t x, y;
    uint32_t n;
    float alpha, beta;
  } push{x.address, y.address, n, alpha, beta};
  Grid grid = grid_1d(n, 256);
  recorder.dispatch(recorder.context().pipelines().get("axpby"), &push, sizeof push, grid.x, grid.y, 1, {x, y}, {y},
                    "axpby");
}

}  // namespace vkt::kernels

namespace vkt::ref {
void axpby(const float* x, float* y, size_t n, float alpha, float beta) {
  for (size_t i = 0; i < n; i++) y[i] = static_cast<float>(double(alpha) * x[i] + (beta == 0 ? 0.0 : double(beta) * y[i]));
}
}  // namespace vkt::ref
