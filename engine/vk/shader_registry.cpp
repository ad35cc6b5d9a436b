#include "engine/vk/shader_registry.hpp"

namespace vkt::vk {

const EmbeddedShader* find_shader(std::string_view name) {
  for (size_t i = 0; i < embedded_shader_count; i++)
    if (name == embedded_shaders[i].name) return &embedded_shaders[i];
  return nullptr;
}

}  // namespace vkt::vk
