#pragma once
// SPIR-V compiled at build time (cmake/Shaders.cmake) and embedded; looked up by name.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vkt::vk {

struct EmbeddedShader {
  const char* name;       // "<op>" or "<op>_<variant>", e.g. "matmul_f16"
  const uint32_t* words;  // SPIR-V words
  size_t word_count;
};

extern const EmbeddedShader embedded_shaders[];
extern const size_t embedded_shader_count;

// nullptr when no shader has that name.
const EmbeddedShader* find_shader(std::string_view name);

}  // namespace vkt::vk
