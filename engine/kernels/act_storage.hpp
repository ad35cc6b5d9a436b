#pragma once
// Activation storage for the kernels' 16-bit variants (shaders/act_storage.glsl): activation
// tensors (saved activations, activation gradients) in fp32, fp16 or bf16, arithmetic in fp32.
// A wrapper takes the DType of its activation ranges (default f32), checks their bytes with
// act_bytes and picks the shader variant with act_shader.
#include <string>
#include <string_view>

#include "engine/base/error.hpp"
#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// Bytes of `elements` activation values stored as `type`.
inline uint64_t act_bytes(uint64_t elements, DType type) { return elements * dtype_bytes(type); }

// `base` ("rmsnorm", "swiglu_gelu") or its 16-bit variant ("rmsnorm_bf16"); a 16-bit type needs
// storageBuffer16BitAccess (asserted: the model checks it with a UserError before recording).
inline std::string act_shader(Recorder& recorder, std::string_view base, DType type) {
  if (type == DType::f32) return std::string(base);
  VKT_ASSERT(recorder.context().caps().storage_16bit,
             std::string(base) + ": 16-bit activations need storageBuffer16BitAccess");
  return std::string(base) + (type == DType::f16 ? "_f16" : "_bf16");
}

}  // namespace vkt::kernels
