#pragma once
// `vktune sweep SWEEP.yaml`: grid or seeded random search over train flags. Every trial is planned
// first (engine/plan, with the trainer's own run_settings) and skipped with the planner's verdict
// when it does not fit the memory budget; the others run one after another through train::train,
// the same code path as `vktune train`, each into SWEEP_DIR/trial-NNN. After every trial the
// results are written atomically to SWEEP_DIR/sweep_state.json, so a killed sweep started again
// skips the trials it finished (an interrupted trial resumes from its last checkpoint). At the end:
// results.csv and a terminal table sorted by the objective, and best_config.yaml, a file for
// `vktune train --config`.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/train/config.hpp"

namespace vkt::train {

// One swept flag. `values` for grid search (and a random choice among them); a distribution for
// random search.
struct SweepParameter {
  enum class Kind { values, uniform, log_uniform, int_uniform };
  std::string name;  // a train option (underscores), e.g. learning_rate
  Kind kind = Kind::values;
  std::vector<std::string> values;  // option text of each value (a list becomes "a,b")
  double min = 0, max = 0;          // distributions
};

enum class SweepMethod { grid, random };

struct SweepSpec {
  std::filesystem::path file;
  TrainConfig base;  // train_config: FILE then train: {...}
  SweepMethod method = SweepMethod::grid;
  int64_t trials = 0;                   // random: how many draws
  uint64_t seed = 0;                    // random: the generator's seed
  int64_t budget_steps = 0;             // per trial: --max-steps (0: the train config's own)
  double budget_minutes = 0;            // per trial: stop after this wall time (0: none)
  std::string objective = "eval_loss";  // eval_loss | train_loss | form | content | fields
  bool minimize = true;
  std::optional<uint64_t> device_memory;  // the planner's budget (else the device's)
  std::filesystem::path output_dir;
  std::vector<SweepParameter> parameters;
  // Objectives form/content/fields: `vktune evaluate` on this data after each trial.
  std::filesystem::path evaluate_data;
  std::vector<std::string> evaluate_json_keys;
  int64_t evaluate_limit = 0;
};

// Reads SWEEP.yaml; UserError naming the file, the line and the key on anything unknown or bad.
SweepSpec load_sweep_spec(const std::filesystem::path& file);

struct PlannedTrial {
  int64_t index = 0;                                       // 1-based
  std::vector<std::pair<std::string, std::string>> flags;  // swept option -> its text value
  TrainConfig config;                                      // base + flags + budget + output folder
};
// The trials in order: the grid's product (last parameter fastest) or `trials` seeded draws.
std::vector<PlannedTrial> plan_trials(const SweepSpec& spec);

enum class TrialStatus { finished, skipped, failed };
const char* trial_status_name(TrialStatus status);
TrialStatus trial_status_from_name(const std::string& name);  // failed for an unknown name

struct TrialResult {
  int64_t index = 0;
  std::vector<std::pair<std::string, std::string>> flags;
  TrialStatus status = TrialStatus::failed;
  std::string reason;          // skipped: the planner's verdict; failed: the error
  double objective = 0;        // valid when finished
  uint64_t planned_bytes = 0;  // the plan's device bytes
  int64_t steps = 0;
  double seconds = 0;
  std::string output;  // the trial folder
};

struct SweepHooks {
  // Called after each trial's result is persisted (tests: count, or throw to simulate a crash).
  std::function<void(const TrialResult&)> after_trial;
};

struct SweepResult {
  std::vector<TrialResult> trials;  // sorted: finished by objective (best first), then failed, skipped
  std::optional<size_t> best;       // index into trials
  int64_t reused = 0;               // trials taken from sweep_state.json instead of run again
  int stop_signal = 0;              // SIGINT/SIGTERM/SIGHUP stopped a trial: the sweep stopped there
  std::filesystem::path csv, best_yaml;
};

// The device budget the planner judges against when the spec gives none: the largest
// device-local heap budget of --device (or of all devices when -1); 0 when unknown.
uint64_t default_device_budget(int64_t device);

SweepResult run_sweep(const SweepSpec& spec, const SweepHooks& hooks = {});

std::string format_sweep_table(const SweepSpec& spec, const SweepResult& result);
std::string sweep_csv(const SweepSpec& spec, const SweepResult& result);
// A YAML file for `vktune train --config`: every option that differs from the defaults, except
// the run's own folder and run-control switches (output_dir, resume, overwrite, headless, ...).
std::string best_config_yaml(const TrainConfig& config, const std::string& header_comment);

}  // namespace vkt::train
