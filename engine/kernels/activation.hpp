#pragma once
// The MLP's gated activation h = act(gate) * up:
//   swiglu (Llama):  act(g) = silu(g) = g / (1 + exp(-g));
//   geglu (Gemma, hidden_activation gelu_pytorch_tanh): act(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// gate, up, h: (n) act (n = rows * intermediate); h may be gate or up. act: their storage type
// (engine/kernels/act_storage.hpp), arithmetic in fp32.
void swiglu(Recorder& recorder, const BufferRange& gate, const BufferRange& up, const BufferRange& h, uint32_t n,
            DType act = DType::f32);
void geglu(Recorder& recorder, const BufferRange& gate, const BufferRange& up, const BufferRange& h, uint32_t n,
           DType act = DType::f32);

// dh, gate, up: (n) act; d_gate, d_up: (n) act, overwritten; d_gate may be gate and d_up may
// be up (in place), which is how the layer backward saves memory.
void swiglu_backward(Recorder& recorder, const BufferRange& dh, const BufferRange& gate, const BufferRange& up,
                     const BufferRange& d_gate, const BufferRange& d_up, uint32_t n, DType act = DType::f32);
void geglu_backward(Recorder& recorder, const BufferRange& dh, const BufferRange& gate, const BufferRange& up,
                    const BufferRange& d_gate, const BufferRange& d_up, uint32_t n, DType act = DType::f32);

}  // namespace vkt::kernels

namespace vkt::ref {
void swiglu(const float* gate, const float* up, float* h, size_t n);
void swiglu_backward(const float* dh, const float* gate, const float* up, float* d_gate, float* d_up, size_t n);
void geglu(const float* gate, const float* up, float* h, size_t n);
void geglu_backward(const float* dh, const float* gate, const float* up, float* d_gate, float* d_up, size_t n);
}  // namespace vkt::ref
