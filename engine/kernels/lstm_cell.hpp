#pragma once
// One LSTM time step (torch.nn.LSTM's cell, gate order i, f, g, o) for P-tuning's LSTM prompt
// encoder (engine/model/p_tuning_lstm.hpp). The input and recurrent products are matmuls; these add
// bias_hh, apply the gates and update the cell, and backward give the pre-activation gradients.
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

struct LstmCellStep {
  BufferRange gates;    // (4H) fp32: in, x·W_ihᵀ + b_ih + h_prev·W_hhᵀ; out, the activated gates i, f, g, o
  BufferRange bias_hh;  // (4H) fp32
  BufferRange c_prev;   // (H) fp32, the previous step's cell; empty (bytes 0) at a direction's first step
  BufferRange c;        // (H) fp32, out
  BufferRange h;        // (H) fp32, out
  BufferRange h_copy;   // (H) fp32, out: h again (the layer's (N, 2H) output row)
};
void lstm_cell(Recorder& recorder, const LstmCellStep& step, uint32_t hidden);

struct LstmCellBackwardStep {
  BufferRange gates;    // (4H) fp32, the forward's activated gates
  BufferRange c_prev;   // (H) fp32; empty at the direction's first step (c_prev = 0)
  BufferRange c;        // (H) fp32, the forward's cell
  BufferRange dh;       // (H) fp32, d loss / d h (the output's and the later step's recurrent part)
  BufferRange dc;       // (H) fp32, in: the later step's d loss / d c (unless first), out: d loss / d c_prev
  bool first = false;   // true at the direction's last time step (no later dc: dc is not read)
  BufferRange d_gates;  // (4H) fp32, out: d loss / d pre-activations (also d bias_ih, d bias_hh)
};
void lstm_cell_backward(Recorder& recorder, const LstmCellBackwardStep& step, uint32_t hidden);

}  // namespace vkt::kernels

namespace vkt::ref {
// gates (4H) in place as the kernel; c_prev may be null (zero cell).
void lstm_cell(float* gates, const float* bias_hh, const float* c_prev, float* c, float* h, size_t hidden);
// dc: in (ignored when first) and out (d c_prev), as the kernel.
void lstm_cell_backward(const float* gates, const float* c_prev, const float* c, const float* dh, float* dc, bool first,
                        float* d_gates, size_t hidden);
}  // namespace vkt::ref
