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

Module fused_owner(const ModelShape& s, Module module) {
  if (!s.fused_projections) return module;
  if (module == Module::k_proj || module == Module::v_proj) return Module::q_proj;
  if (module == Module::up_proj) return Module::gate_proj;
  return module;
}

uint64_t fused_row_offset(const ModelShape& s, Module module) {
  if (!s.fused_projections) return 0;
  switch (module) {
    case Module::k_proj:
      return s.heads * s.head_dim;
    case Module::v_proj:
      return (s.heads + s.kv_heads) * s.head_dim;
    case Module::up_proj:
      return s.intermediate;
    default:
      return 0;
  }
}

uint64_t fused_out_features(const ModelShape& s, Module module) {
  Module owner = fused_owner(s, module);
  if (!s.fused_projections) return module_out_features(s, module);
  if (owner == Module::q_proj) return (s.heads + 2 * s.kv_heads) * s.head_dim;
  if (owner == Module::gate_proj) return 2 * s.intermediate;
  return module_out_features(s, module);
}

const char* stored_module_name(const ModelShape& s, Module module) {
  Module owner = fused_owner(s, module);
  if (s.fused_projections && owner == Module::q_proj) return "qkv_proj";
  if (s.fused_projections && owner == Module::gate_proj) return "gate_up_proj";
  return module_name(module);
}

std::string stored_module_path(const ModelShape& s, Module module) {
  return std::string(module <= Module::o_proj ? "self_attn." : "mlp.") + stored_module_name(s, module);
}

}  // namespace vkt::spec
