#include "engine/model/fused_mlp.hpp"

#include <cstdlib>
#include <cstring>

#include "engine/base/error.hpp"
#include "engine/kernels/activation.hpp"
#include "engine/kernels/matmul_swiglu.hpp"

namespace vkt::model {
namespace {

bool fusion_disabled() {
  const char* value = std::getenv("VKT_DISABLE_FUSED_SWIGLU");
  return value && *value && std::strcmp(value, "0") != 0;
}

// A plain or LoRA layer without bias: its last product writes y whole (IA3, DoRA and QAT layers
// scale or requantize after it, a bias is the epilogue's gate slot).
bool epilogue_applies(const Linear& layer) {
  return !layer.ia3 && !(layer.lora && layer.lora->magnitude.bytes) && layer.qat == kernels::WeightFormat::f32 &&
         !layer.bias.bytes;
}

}  // namespace

void gate_up_swiglu(Recorder& recorder, const Linear& gate, const Linear& up, const BufferRange& x,
                    const BufferRange& gate_out, const BufferRange& up_out, const BufferRange& h, uint32_t rows,
                    const LinearScratch& gate_scratch, const LinearScratch& up_scratch) {
  linear_forward(recorder, gate, x, gate_out, rows, gate_scratch);
  if (fusion_disabled() || !epilogue_applies(up)) {
    linear_forward(recorder, up, x, up_out, rows, up_scratch);
    kernels::swiglu(recorder, gate_out, up_out, h, rows * up.out, up.act);
    return;
  }
  // linear_forward's plain/LoRA path, with the SwiGLU on the product that writes up last: one
  // dispatch less, and up is not read back (its value is in registers when h is written).
  const kernels::SwigluEpilogue epilogue{gate_out, h};
  if (!up.lora) {
    kernels::matmul_nt_swiglu(recorder, x, up.act, up.weight, up_out, up.act, rows, up.out, up.in, 1.0f, 0.0f,
                              epilogue);
    return;
  }
  linear_base_and_lora_intermediate(recorder, up, x, up_out, rows, nullptr, up_scratch);
  // up += s·t·Bᵀ, t = dropout(x)·Aᵀ (rows, r) as linear_lora_intermediate left it
  BufferRange t = up_scratch.lora_t;
  t.bytes = uint64_t(rows) * up.lora->rank * kernels::dtype_bytes(up.act);
  VKT_ASSERT(t.bytes <= up_scratch.lora_t.bytes, "gate_up_swiglu: LoRA scratch too small");
  kernels::matmul_nt_swiglu(recorder, t, up.act, kernels::dense_f32(up.lora->b), up_out, up.act, rows, up.out,
                            up.lora->rank, up.lora->scale, 1.0f, epilogue);
}

}  // namespace vkt::model
