#include "engine/spec/run_settings.hpp"

#include <map>

#include "engine/base/error.hpp"

namespace vkt::spec {

std::span<const NameEntry<Method>> method_names() {
  static constexpr NameEntry<Method> names[] = {
      {Method::lora, "lora"}, {Method::qlora, "qlora"}, {Method::full, "full"}};
  return names;
}

const char* method_name(Method method) { return enum_name(method_names(), method); }

std::span<const NameEntry<Optimizer>> optimizer_names() {
  static constexpr NameEntry<Optimizer> names[] = {{Optimizer::adamw, "adamw_torch"},
                                                   {Optimizer::adamw, "adamw"},  // vktune's older spelling
                                                   {Optimizer::adamw_8bit, "adamw_8bit"},
                                                   {Optimizer::paged_adamw_32bit, "paged_adamw_32bit"},
                                                   {Optimizer::paged_adamw_8bit, "paged_adamw_8bit"},
                                                   {Optimizer::sgd, "sgd"},
                                                   {Optimizer::momentum, "momentum"},
                                                   {Optimizer::adafactor, "adafactor"}};
  return names;
}

const char* optimizer_name(Optimizer optimizer) { return enum_name(optimizer_names(), optimizer); }

std::span<const NameEntry<PeftType>> peft_type_names() {
  static constexpr NameEntry<PeftType> names[] = {{PeftType::lora, "lora"},
                                                  {PeftType::dora, "dora"},
                                                  {PeftType::ia3, "ia3"},
                                                  {PeftType::prompt_tuning, "prompt_tuning"},
                                                  {PeftType::prefix_tuning, "prefix_tuning"},
                                                  {PeftType::p_tuning, "p_tuning"},
                                                  {PeftType::bitfit, "bitfit"}};
  return names;
}

const char* peft_type_name(PeftType type) { return enum_name(peft_type_names(), type); }

uint32_t optimizer_states_per_parameter(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::adamw:
    case Optimizer::adamw_8bit:
    case Optimizer::paged_adamw_32bit:
    case Optimizer::paged_adamw_8bit:
      return 2;
    case Optimizer::momentum:
      return 1;
    case Optimizer::sgd:
    case Optimizer::adafactor:
      return 0;
  }
  return 0;
}

Optimizer optimizer_update_rule(Optimizer optimizer) {
  if (optimizer == Optimizer::paged_adamw_32bit) return Optimizer::adamw;
  if (optimizer == Optimizer::paged_adamw_8bit) return Optimizer::adamw_8bit;
  return optimizer;
}

bool optimizer_is_paged(Optimizer optimizer) {
  return optimizer == Optimizer::paged_adamw_32bit || optimizer == Optimizer::paged_adamw_8bit;
}

WeightFormat linear_weight_format(const RunSettings& settings, uint64_t layer, Module module) {
  if (settings.base_format != WeightFormat::gguf) return settings.base_format;
  const size_t index = layer * module_count + static_cast<size_t>(module);
  VKT_ASSERT(index < settings.gguf_formats.size(), "gguf base format without the weight's GGUF type");
  return settings.gguf_formats[index];
}

std::string base_format_text(const RunSettings& settings) {
  std::string text = kernels::weight_format_name(settings.base_format);
  if (settings.base_format != WeightFormat::gguf) return text;
  std::map<std::string, int> counts;  // format name -> weights
  for (WeightFormat format : settings.gguf_formats) counts[kernels::weight_format_name(format)]++;
  std::string mix;
  for (const auto& [name, count] : counts) mix += (mix.empty() ? "" : ", ") + std::to_string(count) + " x " + name;
  return text + " (" + mix + ")";
}

}  // namespace vkt::spec
