#pragma once
// The MLP's gate and up products and their SwiGLU, h = silu(gate) * up, with the SwiGLU fused into
// the up product's epilogue (kernels::matmul_nt_swiglu) where the up layer allows it (plain or LoRA,
// no bias); otherwise the separate swiglu kernel.
// VKT_DISABLE_FUSED_SWIGLU=1 always takes the separate kernel (A/B, bench/fusions.md).
#include "engine/model/linear.hpp"

namespace vkt::model {

// x: (rows, in) layer act; gate_out, up_out, h: (rows, intermediate) layer act, all three written
// (the backward reads gate and up); h may be gate_out.
void gate_up_swiglu(Recorder& recorder, const Linear& gate, const Linear& up, const BufferRange& x,
                    const BufferRange& gate_out, const BufferRange& up_out, const BufferRange& h, uint32_t rows,
                    const LinearScratch& gate_scratch, const LinearScratch& up_scratch);

}  // namespace vkt::model
