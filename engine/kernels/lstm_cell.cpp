#include "engine/kernels/lstm_cell.hpp"

#include <cmath>

#include <vector>

#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
struct LstmCellPush {
  uint64_t gates, bias_hh, c_prev, c, h, h_copy, d_gates;
  uint32_t n, has_prev, has_dc;
};
}  // namespace

void lstm_cell(Recorder& recorder, const LstmCellStep& s, uint32_t hidden) {
  const uint64_t row = uint64_t(hidden) * 4;
  require_bytes(s.gates, 4 * row, "lstm_cell", "gates");
  require_bytes(s.bias_hh, 4 * row, "lstm_cell", "bias_hh");
  require_bytes(s.c, row, "lstm_cell", "c");
  require_bytes(s.h, row, "lstm_cell", "h");
  require_bytes(s.h_copy, row, "lstm_cell", "h_copy");
  const bool has_prev = s.c_prev.bytes > 0;
  if (has_prev) require_bytes(s.c_prev, row, "lstm_cell", "c_prev");
  LstmCellPush push{s.gates.address,
                    s.bias_hh.address,
                    has_prev ? s.c_prev.address : 0,
                    s.c.address,
                    s.h.address,
                    s.h_copy.address,
                    0,
                    hidden,
                    has_prev ? 1u : 0u,
                    0};
  std::vector<BufferRange> reads = {s.gates, s.bias_hh};
  if (has_prev) reads.push_back(s.c_prev);
  record_dispatch(recorder, {.shader = "lstm_cell",
                             .push = push,
                             .grid = grid_1d(hidden, 256),
                             .reads = reads,
                             .writes = {s.gates, s.c, s.h, s.h_copy}});
}

void lstm_cell_backward(Recorder& recorder, const LstmCellBackwardStep& s, uint32_t hidden) {
  const uint64_t row = uint64_t(hidden) * 4;
  require_bytes(s.gates, 4 * row, "lstm_cell_backward", "gates");
  require_bytes(s.c, row, "lstm_cell_backward", "c");
  require_bytes(s.dh, row, "lstm_cell_backward", "dh");
  require_bytes(s.dc, row, "lstm_cell_backward", "dc");
  require_bytes(s.d_gates, 4 * row, "lstm_cell_backward", "d_gates");
  const bool has_prev = s.c_prev.bytes > 0;
  if (has_prev) require_bytes(s.c_prev, row, "lstm_cell_backward", "c_prev");
  LstmCellPush push{s.gates.address,
                    0,
                    has_prev ? s.c_prev.address : 0,
                    s.c.address,
                    s.dh.address,
                    s.dc.address,
                    s.d_gates.address,
                    hidden,
                    has_prev ? 1u : 0u,
                    s.first ? 0u : 1u};
  std::vector<BufferRange> reads = {s.gates, s.c, s.dh, s.dc};
  if (has_prev) reads.push_back(s.c_prev);
  record_dispatch(recorder, {.shader = "lstm_cell_backward",
                             .push = push,
                             .grid = grid_1d(hidden, 256),
                             .reads = reads,
                             .writes = {s.dc, s.d_gates}});
}

}  // namespace vkt::kernels

namespace vkt::ref {
namespace {
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

void lstm_cell(float* gates, const float* bias_hh, const float* c_prev, float* c, float* h, size_t n) {
  for (size_t j = 0; j < n; j++) {
    const double i = sigmoid(double(gates[j]) + bias_hh[j]), f = sigmoid(double(gates[n + j]) + bias_hh[n + j]);
    const double g = std::tanh(double(gates[2 * n + j]) + bias_hh[2 * n + j]);
    const double o = sigmoid(double(gates[3 * n + j]) + bias_hh[3 * n + j]);
    const double cell = f * (c_prev ? c_prev[j] : 0.0) + i * g;
    gates[j] = float(i), gates[n + j] = float(f), gates[2 * n + j] = float(g), gates[3 * n + j] = float(o);
    c[j] = float(cell);
    h[j] = float(o * std::tanh(cell));
  }
}

void lstm_cell_backward(const float* gates, const float* c_prev, const float* c, const float* dh, float* dc, bool first,
                        float* d_gates, size_t n) {
  for (size_t j = 0; j < n; j++) {
    const double i = gates[j], f = gates[n + j], g = gates[2 * n + j], o = gates[3 * n + j];
    const double tc = std::tanh(double(c[j])), prev = c_prev ? c_prev[j] : 0.0;
    const double dcell = (first ? 0.0 : dc[j]) + dh[j] * o * (1 - tc * tc);
    d_gates[j] = float(dcell * g * i * (1 - i));
    d_gates[n + j] = float(dcell * prev * f * (1 - f));
    d_gates[2 * n + j] = float(dcell * i * (1 - g * g));
    d_gates[3 * n + j] = float(dh[j] * tc * o * (1 - o));
    dc[j] = float(dcell * f);
  }
}
}  // namespace vkt::ref
