#pragma once
// The MLP's gated activation h = act(gate) * up:
//   swiglu (Llama):  act(g) = silu(g) = g / (1 + exp(-g));
//   geglu (Gemma, hidden_activation gelu_pytorch_tanh): act(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

// gate, up, h: (n) fp32 (n = rows * intermediate); h may be gate or up.
void swiglu(Recorder& recorder, const BufferRange& gate, const BufferRange& up, const BufferRange& h, uint32_t n);
void geglu(Recorder& recorder, const BufferRange& gate, const BufferRange& up, const BufferRange& h, uint32_t n);

// dh, gate, up: (n) fp32; d_gate, d_up: (n) fp32, overwritten; d_gate may be gate and d_up may
// be up (in place), which is how the layer backward saves memory.
void swiglu_backward(Recorder& recorder, const BufferRange& dh, const BufferRange& gate, const BufferRange& up,
                     const BufferRange& d_gate, const BufferRange& d_up, uint32_t n);
void geglu_backward(Recorder& recorder, const BufferRange& dh, const BufferRange& gate, const BufferRange& up,
                    const BufferRange& d_gate, const BufferRange& d_up, uint32_t n);

}  // namespace vkt::kernels

namespace vkt::ref {
void swiglu(const float* gate, const float* up, float* h, size_t n);
void swiglu_backward(const float* dh, const float* gate, const float* up, float* d_gate, float* d_up, size_t n);
void geglu(const float* gate, const float* up, float* h, size_t n);
void geglu_backward(const float* dh, const float* gate, const float* up, float* d_gate, float* d_up, size_t n);
}  // namespace vkt::ref
