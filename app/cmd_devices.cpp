// `vktune devices [--json]`: one line per Vulkan device with its capability report (Capabilities,
// then the optional compute extensions: cooperative matrices, subgroup size control).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "engine/vk/context.hpp"
#include "engine/vk/coopmat.hpp"

namespace vkt::app {

void add_devices_command(CLI::App& app) {
  auto* command = app.add_subcommand("devices", "List Vulkan devices and their capabilities");
  static bool as_json = false;
  command->add_flag("--json", as_json, "One JSON object per line instead of text");
  command->callback([] {
    auto devices = vk::list_devices();
    auto extensions = vk::list_compute_extensions();
    for (size_t i = 0; i < devices.size(); i++) {
      vk::ComputeExtensions optional = i < extensions.size() ? extensions[i] : vk::ComputeExtensions{};
      if (as_json) {
        auto json = nlohmann::json::parse(devices[i].to_json());
        json.update(nlohmann::json::parse(optional.to_json()));
        std::printf("%s\n", json.dump().c_str());
      } else {
        std::printf("%s%s\n", devices[i].summary_line().c_str(), optional.summary().c_str());
      }
    }
    if (devices.empty()) std::fprintf(stderr, "no Vulkan device found\n");
  });
}

}  // namespace vkt::app
