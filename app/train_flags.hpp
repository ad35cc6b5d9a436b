#pragma once
// The trainer's flags, registered on a CLI11 command from train::option_table(): `vktune train`
// and `vktune plan` take the same ones. Values are applied after --config's YAML, so flags win.
#include <CLI/CLI.hpp>
#include <map>
#include <memory>
#include <string>

#include "engine/train/config.hpp"

namespace vkt::app {

class TrainFlags {
 public:
  // Registers --config and one flag per option (booleans accept `--flag`, `--flag true|false`).
  void add_to(CLI::App& command);
  // Defaults <- YAML file (--config) <- flags given on the command line.
  train::TrainConfig resolve() const;

 private:
  std::string config_file_;
  std::map<std::string, std::pair<CLI::Option*, std::shared_ptr<std::string>>> values_;
};

}  // namespace vkt::app
