#include "engine/spec/run_settings.hpp"

namespace vkt::spec {

std::span<const NameEntry<Method>> method_names() {
  static constexpr NameEntry<Method> names[] = {
      {Method::lora, "lora"}, {Method::qlora, "qlora"}, {Method::full, "full"}};
  return names;
}

const char* method_name(Method method) { return enum_name(method_names(), method); }

std::span<const NameEntry<Optimizer>> optimizer_names() {
  static constexpr NameEntry<Optimizer> names[] = {
      {Optimizer::adamw, "adamw"}, {Optimizer::sgd, "sgd"}, {Optimizer::momentum, "momentum"}};
  return names;
}

const char* optimizer_name(Optimizer optimizer) { return enum_name(optimizer_names(), optimizer); }

uint32_t optimizer_states_per_parameter(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::adamw:
      return 2;
    case Optimizer::momentum:
      return 1;
    case Optimizer::sgd:
      return 0;
  }
  return 0;
}

}  // namespace vkt::spec
