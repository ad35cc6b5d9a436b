#include "engine/spec/model_shape.hpp"

namespace vkt::spec {

const char* module_name(Module module) {
  static const char* names[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names[static_cast<size_t>(module)];
}

std::optional<Module> module_from_name(const std::string& name) {
  for (size_t i = 0; i < module_count; i++)
    if (name == module_name(static_cast<Module>(i))) return static_cast<Module>(i);
  return std::nullopt;
}

std::string module_path(Module module) {
  bool attention = module <= Module::o_proj;
  return std::string(attention ? "self_attn." : "mlp.") + module_name(module);
}

uint64_t module_in_features(const ModelShape& s, Module module) {
  switch (module) {
    case Module::o_proj:
      return s.heads * s.head_dim;
    case Module::down_proj:
      return s.intermediate;
    default:
      return s.hidden;
  }
}

uint64_t module_out_features(const ModelShape& s, Module module) {
  switch (module) {
    case Module::q_proj:
      return s.heads * s.head_dim;
    case Module::k_proj:
    case Module::v_proj:
      return s.kv_heads * s.head_dim;
    case Module::o_proj:
    case Module::down_proj:
      return s.hidden;
    default:
      return s.intermediate;
  }
}

}  // namespace vkt::spec
