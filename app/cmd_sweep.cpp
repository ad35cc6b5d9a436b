// `vktune sweep SWEEP.yaml [--output-dir DIR] [--device-memory 24GiB]`: grid or random search over
// train flags, every trial planned first (engine/train/sweep.hpp).
#include <cstdio>
#include <cstdlib>

#include "app/commands.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/train/distributed.hpp"
#include "engine/train/sweep.hpp"

namespace vkt::app {

namespace {

struct SweepArguments {
  std::string file;
  std::string output_dir;
  std::string device_memory;
  bool dry_run = false;
};

void run_sweep_command(const SweepArguments& arguments) {
  train::SweepSpec spec = train::load_sweep_spec(arguments.file);
  if (!arguments.output_dir.empty()) spec.output_dir = arguments.output_dir;
  if (!arguments.device_memory.empty()) spec.device_memory = parse_byte_size(arguments.device_memory);
  if (arguments.dry_run) {
    for (const auto& trial : train::plan_trials(spec)) {
      std::printf("trial %lld:", static_cast<long long>(trial.index));
      for (const auto& [name, value] : trial.flags) std::printf(" %s=%s", name.c_str(), value.c_str());
      std::printf("\n");
    }
    return;
  }
  train::SweepResult result = train::run_sweep(spec);
  if (!train::world().writer()) {  // under mpirun rank 0 gathers and prints every rank's trials
    if (result.stop_signal) std::exit(128 + result.stop_signal);
    return;
  }
  std::printf("\n%s", train::format_sweep_table(spec, result).c_str());
  if (result.reused > 0)
    std::printf("%lld trials were done in an earlier run of this sweep and not run again\n",
                static_cast<long long>(result.reused));
  std::printf("results: %s\n", result.csv.string().c_str());
  if (result.best) {
    std::printf("best config: %s (vktune train --config %s --output-dir DIR)\n", result.best_yaml.string().c_str(),
                result.best_yaml.string().c_str());
  } else {
    std::printf("no trial finished: no best config\n");
  }
  if (result.stop_signal) {
    std::printf("stopped by a signal; run the same command again to continue where it stopped\n");
    std::fflush(stdout);
    std::exit(128 + result.stop_signal);
  }
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  static SweepArguments arguments;
  auto* command = app.add_subcommand(
      "sweep", "Grid or random search over train flags; each trial planned first, what cannot fit is skipped");
  command->add_option("SWEEP_YAML", arguments.file, "the sweep file (see examples/sweep/)")->required();
  command->add_option("--output-dir", arguments.output_dir, "the sweep folder (overrides output_dir: in the file)");
  command->add_option("--device-memory", arguments.device_memory,
                      "judge every trial's plan against this much memory, e.g. 24GiB (default: the device's)");
  command->add_flag("--dry-run", arguments.dry_run, "list the trials' flags and exit");
  command->footer(
      "SWEEP.yaml keys:\n"
      "  train_config: FILE.yaml     the train flags every trial shares (as `vktune train --config`)\n"
      "  train: {model: ..., data: ..., eval_data: ...}   more shared flags (override train_config)\n"
      "  parameters:                 any train option (underscores):\n"
      "    learning_rate: {distribution: log_uniform, min: 1e-5, max: 1e-3}   (random; also uniform, int_uniform)\n"
      "    lora_r: {values: [4, 8, 16]}                                      (grid or random choice)\n"
      "    target_modules: {values: [[q_proj, v_proj], all-linear]}\n"
      "  method: grid | random       trials: N and seed: S for random\n"
      "  budget: {steps: 50, minutes: 5}   per trial: --max-steps, and a wall-time stop (checkpoint scored)\n"
      "  objective: eval_loss | train_loss | form | content | fields   goal: minimize | maximize\n"
      "  evaluate: {data: FILE, json_keys: [a, b], limit: 32}   for form/content/fields (vktune evaluate)\n"
      "  device_memory: 24GiB        the planner's budget (default: the device's)\n"
      "  output_dir: DIR             trial-NNN/ folders, sweep_state.json, results.csv, best_config.yaml\n\n"
      "Trials whose memory plan exceeds the budget are skipped with the planner's verdict. The sweep is\n"
      "resumable: run it again and the trials recorded in sweep_state.json are not run again (an\n"
      "interrupted trial continues from its last checkpoint).");
  command->callback([] { run_sweep_command(arguments); });
}

}  // namespace vkt::app
