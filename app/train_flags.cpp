#include "app/train_flags.hpp"

#include <algorithm>

namespace vkt::app {

void TrainFlags::add_to(CLI::App& command) {
  command.add_option("--config", config_file_,
                     "YAML file with these options (names with underscores); flags override it");
  for (const auto& option : train::option_table()) {
    std::string flag = "--" + option.name;
    std::replace(flag.begin(), flag.end(), '_', '-');
    auto value = std::make_shared<std::string>();
    std::string help = option.help;
    CLI::Option* cli = command.add_option(flag, *value, help);
    if (std::holds_alternative<bool train::TrainConfig::*>(option.field)) {
      cli->expected(0, 1);
      cli->default_str("true");  // a bare --flag means true
    }
    values_[option.name] = {cli, value};
  }
}

train::TrainConfig TrainFlags::resolve() const {
  train::TrainConfig config;
  if (!config_file_.empty()) train::apply_yaml_file(config, config_file_);
  for (const auto& option : train::option_table()) {
    const auto& [cli, value] = values_.at(option.name);
    if (cli->count() > 0) train::set_option(config, option, value->empty() ? "true" : *value);
  }
  return config;
}

}  // namespace vkt::app
