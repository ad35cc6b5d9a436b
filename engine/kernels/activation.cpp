#include "engine/kernels/activation.hpp"

#include <cmath>

#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {
namespace {

// `shader` is swiglu or its gelu variant; `op` names the kernel in errors and timings.
void record_gated(Recorder& recorder, const char* shader, const char* op, const BufferRange& gate,
                  const BufferRange& up, const BufferRange& h, uint32_t n, DType act) {
  require_bytes(gate, act_bytes(n, act), op, "gate");
  require_bytes(up, act_bytes(n, act), op, "up");
  require_bytes(h, act_bytes(n, act), op, "h");
  struct {
    uint64_t gate, up, h;
    uint32_t n;
  } push{gate.address, up.address, h.address, n};
  record_dispatch(recorder, {.shader = act_shader(recorder, shader, act),
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = {gate, up},
                             .writes = {h},
                             .label = op});
}

void record_gated_backward(Recorder& recorder, const char* shader, const char* op, const BufferRange& dh,
                           const BufferRange& gate, const BufferRange& up, const BufferRange& d_gate,
                           const BufferRange& d_up, uint32_t n, DType act) {
  uint64_t bytes = act_bytes(n, act);
  require_bytes(dh, bytes, op, "dh");
  require_bytes(gate, bytes, op, "gate");
  require_bytes(up, bytes, op, "up");
  require_bytes(d_gate, bytes, op, "d_gate");
  require_bytes(d_up, bytes, op, "d_up");
  struct {
    uint64_t dh, gate, up, d_gate, d_up;
    uint32_t n;
  } push{dh.address, gate.address, up.address, d_gate.address, d_up.address, n};
  record_dispatch(recorder, {.shader = act_shader(recorder, shader, act),
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = {dh, gate, up},
                             .writes = {d_gate, d_up},
                             .label = op});
}

}  // namespace

void swiglu(Recorder& recorder, const BufferRange& gate, const BufferRange& up, const BufferRange& h, uint32_t n,
            DType act) {
  record_gated(recorder, "swiglu", "swiglu", gate, up, h, n, act);
}

void geglu(Recorder& recorder, const BufferRange& gate, const BufferRange& up, const BufferRange& h, uint32_t n,
           DType act) {
  record_gated(recorder, "swiglu_gelu", "geglu", gate, up, h, n, act);
}

void swiglu_backward(Recorder& recorder, const BufferRange& dh, const BufferRange& gate, const BufferRange& up,
                     const BufferRange& d_gate, const BufferRange& d_up, uint32_t n, DType act) {
  record_gated_backward(recorder, "swiglu_backward", "swiglu_backward", dh, gate, up, d_gate, d_up, n, act);
}

void geglu_backward(Recorder& recorder, const BufferRange& dh, const BufferRange& gate, const BufferRange& up,
                    const BufferRange& d_gate, const BufferRange& d_up, uint32_t n, DType act) {
  record_gated_backward(recorder, "swiglu_backward_gelu", "geglu_backward", dh, gate, up, d_gate, d_up, n, act);
}

}  // namespace vkt::kernels

namespace vkt::ref {
namespace {

constexpr double sqrt_2_over_pi = 0.7978845608028654, gelu_cubic = 0.044715;

double gelu_tanh(double g) { return 0.5 * g * (1.0 + std::tanh(sqrt_2_over_pi * (g + gelu_cubic * g * g * g))); }

double gelu_tanh_derivative(double g) {
  double t = std::tanh(sqrt_2_over_pi * (g + gelu_cubic * g * g * g));
  return 0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * sqrt_2_over_pi * (1.0 + 3.0 * gelu_cubic * g * g);
}

}  // namespace

void swiglu(const float* gate, const float* up, float* h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double g = gate[i];
    h[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void swiglu_backward(const float* dh, const float* gate, const float* up, float* d_gate, float* d_up, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double g = gate[i], u = up[i], d = dh[i];  // read before writing: d_gate may be gate
    double s = 1.0 / (1.0 + std::exp(-g));
    d_gate[i] = static_cast<float>(d * u * s * (1.0 + g * (1.0 - s)));
    d_up[i] = static_cast<float>(d * g * s);
  }
}

void geglu(const float* gate, const float* up, float* h, size_t n) {
  for (size_t i = 0; i < n; i++) h[i] = static_cast<float>(gelu_tanh(gate[i]) * up[i]);
}

void geglu_backward(const float* dh, const float* gate, const float* up, float* d_gate, float* d_up, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double g = gate[i], u = up[i], d = dh[i];  // read before writing: d_gate may be gate
    d_gate[i] = static_cast<float>(d * u * gelu_tanh_derivative(g));
    d_up[i] = static_cast<float>(d * gelu_tanh(g));
  }
}

}  // namespace vkt::ref
