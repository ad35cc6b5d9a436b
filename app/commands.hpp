#pragma once
// Every `vktune` subcommand registers itself on the CLI11 app from its own cmd_*.cpp file.
#include <CLI/CLI.hpp>

#include <string>

namespace vkt::app {

void add_devices_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_dashboard_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_plan_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_prune_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_model_tool_commands(CLI::App& app);
void add_evaluate_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_lr_find_command(CLI::App& app);

// Commands that write a new model folder from --model refuse an --output that is the same folder
// (it would be overwritten while being read); `result` names what is written ("merged").
void require_new_output_folder(const std::string& model, const std::string& output, const std::string& result);

}  // namespace vkt::app
