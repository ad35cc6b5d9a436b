#include "engine/kernels/elementwise.hpp"

#include <cmath>
#include <vector>

#include "engine/base/error.hpp"

#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"
#include "engine/kernels/reduce.hpp"

namespace vkt::kernels {

void axpby(Recorder& recorder, const BufferRange& x, const BufferRange& y, uint32_t n, float alpha, float beta,
           DType act) {
  uint64_t bytes = act_bytes(n, act);
  require_bytes(x, bytes, "axpby", "x");
  require_bytes(y, bytes, "axpby", "y");
  struct {
    uint64_t x, y;
    uint32_t n;
    float alpha, beta;
  } push{x.address, y.address, n, alpha, beta};
  record_dispatch(recorder, {.shader = act_shader(recorder, "axpby", act),
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = {x, y},
                             .writes = {y},
                             .label = "axpby"});
}

void scale(Recorder& recorder, const BufferRange& x, uint32_t n, float s, const BufferRange* factor, DType act) {
  require_bytes(x, act_bytes(n, act), "scale", "x");
  if (factor) require_bytes(*factor, 4, "scale", "factor");
  struct {
    uint64_t x, factor;
    uint32_t n;
    float s;
  } push{x.address, factor ? factor->address : 0, n, s};
  std::vector<BufferRange> reads{x};
  if (factor) reads.push_back(*factor);
  record_dispatch(recorder, {.shader = act_shader(recorder, "scale", act),
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = reads,
                             .writes = {x},
                             .label = "scale"});
}

void softcap(Recorder& recorder, const BufferRange& x, uint32_t n, float cap, DType act) {
  require_bytes(x, act_bytes(n, act), "softcap", "x");
  VKT_ASSERT(cap > 0 && std::isfinite(cap), "softcap: cap must be positive");
  struct {
    uint64_t x, factor;
    uint32_t n;
    float s;
  } push{x.address, 0, n, cap};
  record_dispatch(recorder, {.shader = act_shader(recorder, "scale_softcap", act),
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = {x},
                             .writes = {x},
                             .label = "softcap"});
}

void add(Recorder& recorder, const BufferRange& a, const BufferRange& b, const BufferRange& out, uint32_t n,
         DType act) {
  uint64_t bytes = act_bytes(n, act);
  require_bytes(a, bytes, "add", "a");
  require_bytes(b, bytes, "add", "b");
  require_bytes(out, bytes, "add", "out");
  struct {
    uint64_t a, b, out;
    uint32_t n;
  } push{a.address, b.address, out.address, n};
  record_dispatch(recorder, {.shader = act_shader(recorder, "add", act),
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = {a, b},
                             .writes = {out},
                             .label = "add"});
}

void scale_channels(Recorder& recorder, const BufferRange& x, const BufferRange& scale, const BufferRange& y,
                    uint32_t rows, uint32_t cols) {
  const uint64_t n = uint64_t(rows) * cols;
  VKT_ASSERT(cols > 0 && n <= 0xffffffffull, "scale_channels: (rows, cols) must fit 32-bit indices");
  require_bytes(x, n * 4, "scale_channels", "x");
  require_bytes(scale, uint64_t(cols) * 4, "scale_channels", "scale");
  require_bytes(y, n * 4, "scale_channels", "y");
  struct {
    uint64_t x, scale, y;
    uint32_t n, cols;
  } push{x.address, scale.address, y.address, static_cast<uint32_t>(n), cols};
  record_dispatch(recorder, {.shader = "scale_channels",
                             .push = push,
                             .grid = grid_1d(static_cast<uint32_t>(n), 256),
                             .reads = {x, scale},
                             .writes = {y}});
}

void scale_channels_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& x, const BufferRange& scale,
                             const BufferRange& dx, const BufferRange& d_scale, const BufferRange& product,
                             const BufferRange& workspace, uint32_t rows, uint32_t cols, bool accumulate) {
  const uint32_t n = rows * cols;
  // d_scale (+)= Σ_rows dy * x: the element-wise product (one row of n channels), then column sums.
  scale_channels(recorder, dy, x, product, 1, n);
  sum_rows(recorder, product, d_scale, workspace, rows, cols, accumulate);
  if (dx.bytes) scale_channels(recorder, dy, scale, dx, rows, cols);  // after the product read dy
}

}  // namespace vkt::kernels

namespace vkt::ref {
void axpby(const float* x, float* y, size_t n, float alpha, float beta) {
  for (size_t i = 0; i < n; i++)
    y[i] = static_cast<float>(double(alpha) * x[i] + (beta == 0 ? 0.0 : double(beta) * y[i]));
}
void scale(float* x, size_t n, float s, const float* factor) {
  double multiplier = factor ? double(s) * factor[0] : double(s);
  for (size_t i = 0; i < n; i++) x[i] = static_cast<float>(x[i] * multiplier);
}
void softcap(float* x, size_t n, float cap) {
  for (size_t i = 0; i < n; i++) x[i] = static_cast<float>(cap * std::tanh(double(x[i]) / cap));
}
void add(const float* a, const float* b, float* out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = static_cast<float>(double(a[i]) + b[i]);
}
void scale_channels(const float* x, const float* scale, float* y, size_t rows, size_t cols) {
  for (size_t i = 0; i < rows * cols; i++) y[i] = static_cast<float>(double(x[i]) * scale[i % cols]);
}
void scale_channels_backward(const float* dy, const float* x, const float* scale, float* dx, float* d_scale,
                             size_t rows, size_t cols) {
  for (size_t c = 0; c < cols; c++) {
    double sum = 0;
    for (size_t r = 0; r < rows; r++) sum += double(dy[r * cols + c]) * x[r * cols + c];
    d_scale[c] = static_cast<float>(sum);
  }
  if (dx)
    for (size_t i = 0; i < rows * cols; i++) dx[i] = static_cast<float>(double(dy[i]) * scale[i % cols]);
}
}  // namespace vkt::ref
