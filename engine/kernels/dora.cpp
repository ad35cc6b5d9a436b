#include "engine/kernels/dora.hpp"

#include <cmath>
#include <vector>

#include "engine/base/error.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

void dora_norm(Recorder& recorder, const BufferRange& weight, const BufferRange& magnitude, const BufferRange& inv_norm,
               const BufferRange& scale, uint32_t rows, uint32_t cols, bool init) {
  require_index_range(uint64_t(rows) * cols, "dora_norm");
  require_bytes(weight, uint64_t(rows) * cols * 4, "dora_norm", "weight");
  for (const auto* vector : {&magnitude, &inv_norm, &scale})
    require_bytes(*vector, uint64_t(rows) * 4, "dora_norm", "vector");
  struct {
    uint64_t weight, magnitude, inv_norm, scale;
    uint32_t rows, cols, init;
  } push{weight.address, magnitude.address, inv_norm.address, scale.address, rows, cols, init ? 1u : 0u};
  std::vector<BufferRange> writes{inv_norm, scale};
  if (init) writes.push_back(magnitude);
  record_dispatch(
      recorder,
      {.shader = "dora_norm", .push = push, .grid = grid_1d(rows, 1), .reads = {weight, magnitude}, .writes = writes});
}

void dora_output(Recorder& recorder, const BufferRange& v, const BufferRange& scale, const BufferRange* bias,
                 const BufferRange& y, uint32_t rows, uint32_t cols) {
  const uint64_t n = uint64_t(rows) * cols;
  require_index_range(n, "dora_output");
  require_bytes(v, n * 4, "dora_output", "v");
  require_bytes(y, n * 4, "dora_output", "y");
  require_bytes(scale, uint64_t(cols) * 4, "dora_output", "scale");
  std::vector<BufferRange> reads{v, scale};
  if (bias) {
    require_bytes(*bias, uint64_t(cols) * 4, "dora_output", "bias");
    reads.push_back(*bias);
  }
  struct {
    uint64_t v, scale, bias, y;
    uint32_t n, cols;
  } push{v.address, scale.address, bias ? bias->address : 0, y.address, static_cast<uint32_t>(n), cols};
  record_dispatch(recorder, {.shader = "dora_output",
                             .push = push,
                             .grid = grid_1d(static_cast<uint32_t>(n), 256),
                             .reads = reads,
                             .writes = {y}});
}

}  // namespace vkt::kernels

namespace vkt::ref {
void dora_norm(const float* weight, float* magnitude, float* inv_norm, float* scale, uint32_t rows, uint32_t cols,
               bool init) {
  for (uint32_t o = 0; o < rows; o++) {
    double sum = 0;
    for (uint32_t i = 0; i < cols; i++) sum += double(weight[size_t(o) * cols + i]) * weight[size_t(o) * cols + i];
    const double norm = std::sqrt(sum);
    if (init) magnitude[o] = static_cast<float>(norm);
    inv_norm[o] = static_cast<float>(1.0 / norm);
    scale[o] = static_cast<float>(magnitude[o] / norm);
  }
}
void dora_output(const float* v, const float* scale, const float* bias, float* y, uint32_t rows, uint32_t cols) {
  for (size_t i = 0; i < size_t(rows) * cols; i++)
    y[i] = static_cast<float>(double(v[i]) * scale[i % cols] + (bias ? bias[i % cols] : 0.0));
}
}  // namespace vkt::ref
