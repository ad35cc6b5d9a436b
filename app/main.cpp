// vktune: LoRA/QLoRA/full finetuning of Llama-family models on any GPU through Vulkan compute.
#include <cstdio>
#include <exception>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/version.hpp"
#include "engine/vk/check.hpp"

int main(int argc, char** argv) {
  CLI::App app{"vktune: finetune LLMs (LoRA, QLoRA, full) on any GPU through Vulkan compute"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("vktune ") + vkt::vktune_version);
  vkt::app::add_devices_command(app);
  vkt::app::add_train_command(app);
  vkt::app::add_plan_command(app);
  vkt::app::add_merge_command(app);
  vkt::app::add_export_command(app);
  vkt::app::add_quantize_command(app);
  vkt::app::add_prune_command(app);
  vkt::app::add_generate_command(app);
  vkt::app::add_model_tool_commands(app);
  vkt::app::add_evaluate_command(app);
  vkt::app::add_tokenize_command(app);
  vkt::app::add_sweep_command(app);
  vkt::app::add_lr_find_command(app);
  vkt::app::add_bench_command(app);
  vkt::app::add_dashboard_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  } catch (const vkt::UserError& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    if (!error.hint().empty()) std::fprintf(stderr, "---> HINT: %s\n", error.hint().c_str());
    return 1;
  } catch (const vkt::vk::VulkanError& error) {
    std::fprintf(stderr, "vulkan error: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 3;
  }
  return 0;
}
