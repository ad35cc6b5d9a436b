// `vktune devices [--json]`: one line per Vulkan device with its capability report.
#include <cstdio>

#include "app/commands.hpp"
#include "engine/vk/context.hpp"

namespace vkt::app {

void add_devices_command(CLI::App& app) {
  auto* command = app.add_subcommand("devices", "List Vulkan devices and their capabilities");
  static bool as_json = false;
  command->add_flag("--json", as_json, "One JSON object per line instead of text");
  command->callback([] {
    auto devices = vk::list_devices();
    for (const auto& device : devices)
      std::printf("%s\n", as_json ? device.to_json().c_str() : device.summary_line().c_str());
    if (devices.empty()) std::fprintf(stderr, "no Vulkan device found\n");
  });
}

}  // namespace vkt::app
