#include "engine/kernels/random.hpp"

#include <limits>

#include "engine/base/error.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
const char* dropout_shader(DType type) {
  switch (type) {
    case DType::f32:
      return "dropout";
    case DType::f16:
      return "dropout_f16";
    case DType::bf16:
      return "dropout_bf16";
  }
  return "dropout";
}

// Shaders index elements with 32-bit integers and launch one thread per 4 elements.
void check_count(uint64_t n, const char* op) {
  VKT_ASSERT(n <= std::numeric_limits<uint32_t>::max() - 4, std::string(op) + ": more than 2^32 - 4 elements");
}

void record_dropout(Recorder& recorder, const BufferRange& x, const BufferRange& y, DType type, uint64_t n, float p,
                    uint32_t layer, const BufferRange& step_state, const char* label) {
  check_count(n, label);
  require_bytes(step_state, sizeof(StepState), label, "step_state");
  VKT_ASSERT(type == DType::f32 || recorder.context().caps().storage_16bit,
             std::string(label) + ": 16-bit storage types need storageBuffer16BitAccess");
  struct {
    uint64_t x, y, step_state;
    uint32_t n, layer;
    float p, scale;
  } push{x.address, y.address, step_state.address, static_cast<uint32_t>(n), layer, p, dropout_scale(p)};
  record_dispatch(recorder, {.shader = dropout_shader(type),
                             .push = push,
                             .grid = grid_1d(ceil_div(n, 4), 256),
                             .reads = {x, step_state},
                             .writes = {y},
                             .label = label});
}
}  // namespace

float dropout_scale(float p) { return p >= 1.0f ? 0.0f : static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }

void random_uniform(Recorder& recorder, const BufferRange& out, uint64_t n, uint32_t seed, uint32_t stream,
                    uint32_t step, uint32_t layer, float low, float high) {
  check_count(n, "random_uniform");
  require_bytes(out, n * 4, "random_uniform", "out");
  struct {
    uint64_t out;
    uint32_t n, seed, stream, step, layer;
    float low, high;
  } push{out.address, static_cast<uint32_t>(n), seed, stream, step, layer, low, high};
  record_dispatch(recorder,
                  {.shader = "random_uniform", .push = push, .grid = grid_1d(ceil_div(n, 4), 256), .writes = {out}});
}

void dropout(Recorder& recorder, const BufferRange& x, const BufferRange& y, DType type, uint64_t n, float p,
             uint32_t layer, const BufferRange& step_state) {
  require_bytes(x, n * dtype_bytes(type), "dropout", "x");
  require_bytes(y, n * dtype_bytes(type), "dropout", "y");
  record_dropout(recorder, x, y, type, n, p, layer, step_state, "dropout");
}

void dropout_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& dx, DType type, uint64_t n, float p,
                      uint32_t layer, const BufferRange& step_state) {
  require_bytes(dy, n * dtype_bytes(type), "dropout_backward", "dy");
  require_bytes(dx, n * dtype_bytes(type), "dropout_backward", "dx");
  record_dropout(recorder, dy, dx, type, n, p, layer, step_state, "dropout_backward");
}

}  // namespace vkt::kernels

namespace vkt::ref {

void random_uniform(float* out, uint64_t n, uint32_t seed, uint32_t stream, uint32_t step, uint32_t layer, float low,
                    float high) {
  // fp32 arithmetic in the shader's order (the shader marks it `precise`: no fused multiply-add).
  float span = high - low;
  for (uint64_t i = 0; i < n; i++) {
    volatile float scaled = span * random::random_uniform(seed, stream, step, layer, i);  // keeps mul and add apart
    out[i] = low + scaled;
  }
}

void dropout(const float* x, float* y, uint64_t n, float p, uint32_t layer, uint32_t seed, uint32_t step) {
  float scale = kernels::dropout_scale(p);
  for (uint64_t i = 0; i < n; i++) y[i] = random::dropout_keep(seed, step, layer, i, p) ? x[i] * scale : 0.0f;
}

}  // namespace vkt::ref
