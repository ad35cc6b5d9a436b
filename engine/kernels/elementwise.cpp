#include "engine/kernels/elementwise.hpp"

#include <vector>

#include "engine/base/error.hpp"

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

void scale(Recorder& recorder, const BufferRange& x, uint32_t n, float s, const BufferRange* factor) {
  VKT_ASSERT(x.bytes >= uint64_t(n) * 4, "scale: x is smaller than n");
  struct {
    uint64_t x, factor;
    uint32_t n;
    float s;
  } push{x.address, factor ? factor->address : 0, n, s};
  Grid grid = grid_1d(n, 256);
  std::vector<BufferRange> reads{x};
  if (factor) reads.push_back(*factor);
  recorder.dispatch(recorder.context().pipelines().get("scale"), &push, sizeof push, grid.x, grid.y, 1, reads, {x},
                    "scale");
}

void add(Recorder& recorder, const BufferRange& a, const BufferRange& b, const BufferRange& out, uint32_t n) {
  VKT_ASSERT(a.bytes >= uint64_t(n) * 4 && b.bytes >= uint64_t(n) * 4 && out.bytes >= uint64_t(n) * 4,
             "add: a tensor is smaller than n");
  struct {
    uint64_t a, b, out;
    uint32_t n;
  } push{a.address, b.address, out.address, n};
  Grid grid = grid_1d(n, 256);
  recorder.dispatch(recorder.context().pipelines().get("add"), &push, sizeof push, grid.x, grid.y, 1, {a, b}, {out},
                    "add");
}

}  // namespace vkt::kernels

namespace vkt::ref {
void axpby(const float* x, float* y, size_t n, float alpha, float beta) {
  for (size_t i = 0; i < n; i++) y[i] = static_cast<float>(double(alpha) * x[i] + (beta == 0 ? 0.0 : double(beta) * y[i]));
}
void scale(float* x, size_t n, float s, const float* factor) {
  double multiplier = factor ? double(s) * factor[0] : double(s);
  for (size_t i = 0; i < n; i++) x[i] = static_cast<float>(x[i] * multiplier);
}
void add(const float* a, const float* b, float* out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = static_cast<float>(double(a[i]) + b[i]);
}
}  // namespace vkt::ref
