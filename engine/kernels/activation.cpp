#include "engine/kernels/activation.hpp"

#include <cmath>

#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

void swiglu(Recorder& recorder, const BufferRange& gate, const BufferRange& up, const BufferRange& h, uint32_t n) {
  require_bytes(gate, uint64_t(n) * 4, "swiglu", "gate");
  require_bytes(up, uint64_t(n) * 4, "swiglu", "up");
  require_bytes(h, uint64_t(n) * 4, "swiglu", "h");
  struct {
    uint64_t gate, up, h;
    uint32_t n;
  } push{gate.address, up.address, h.address, n};
  record_dispatch(recorder,
                  {.shader = "swiglu", .push = push, .grid = grid_1d(n, 256), .reads = {gate, up}, .writes = {h}});
}

void swiglu_backward(Recorder& recorder, const BufferRange& dh, const BufferRange& gate, const BufferRange& up,
                     const BufferRange& d_gate, const BufferRange& d_up, uint32_t n) {
  uint64_t bytes = uint64_t(n) * 4;
  require_bytes(dh, bytes, "swiglu_backward", "dh");
  require_bytes(gate, bytes, "swiglu_backward", "gate");
  require_bytes(up, bytes, "swiglu_backward", "up");
  require_bytes(d_gate, bytes, "swiglu_backward", "d_gate");
  require_bytes(d_up, bytes, "swiglu_backward", "d_up");
  struct {
    uint64_t dh, gate, up, d_gate, d_up;
    uint32_t n;
  } push{dh.address, gate.address, up.address, d_gate.address, d_up.address, n};
  record_dispatch(recorder, {.shader = "swiglu_backward", .push = push, .grid = grid_1d(n, 256),
                             .reads = {dh, gate, up}, .writes = {d_gate, d_up}});
}

}  // namespace vkt::kernels

namespace vkt::ref {

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

}  // namespace vkt::ref
