#pragma once
// `vktune train`: LoRA, QLoRA or full finetuning of a Llama-family model with the flags HF users
// know. One optimizer step = k micro-batches (forward + backward, recorded once and replayed)
// then one optimizer submission (global norm, clipping, AdamW/SGD, zeroing), also recorded once.
// Per-step values (learning rate, step, RNG step, 1/Σw) live in the StepState buffer.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "engine/plan/plan.hpp"
#include "engine/train/config.hpp"
#include "engine/train/monitor.hpp"

namespace vkt::model {
struct ModelConfig;
}

namespace vkt::train {

// The memory-relevant settings of a training configuration (shared with `vktune plan`); with the
// model's shape, target module names are checked against the model's own (PEFT's) names.
spec::RunSettings run_settings(const TrainConfig& config, uint64_t seq_len, const spec::ModelShape* model = nullptr);

struct TrainSummary {
  int64_t steps = 0;
  double first_loss = 0, last_loss = 0;
  double tokens_per_second = 0;
  double eval_loss = -1;         // -1 without --eval-data
  std::filesystem::path output;  // the adapter (or model) folder
  plan::MemoryPlan plan;
  vk::LedgerSnapshot measured;  // the ledger at the end of the run (peaks of the run)
  int stop_signal = 0;          // SIGINT, SIGTERM or SIGHUP when one stopped the run (checkpoint saved), else 0
  bool early_stopped = false;   // --early-stopping-patience ended the run before max_steps
  int64_t best_checkpoint_step = -1;  // --load-best-model-at-end: the step whose weights were written
};

// Runs a whole training run. `monitor` (optional) receives live snapshots and carries pause /
// save / stop requests from a dashboard; the trainer also writes metrics.jsonl and run.json.
// SIGINT, SIGTERM and SIGHUP stop it after the current step with a checkpoint and run.json
// "stopped" (TrainSummary::stop_signal says which); a second signal exits the process at once
// with 128 + the signal. A non-finite loss or gradient, or a failed write, is a UserError after
// run.json is marked "failed" (when it can be written); the last checkpoint stays intact.
// Test-only: VKT_TEST_RAISE_AT_STEP=N[,N...] raises VKT_TEST_RAISE_SIGNAL (INT, TERM (default) or
// HUP) after each listed step (listed twice: raised twice), for deterministic signal tests.
TrainSummary train(const TrainConfig& config, RunMonitor* monitor = nullptr);

// Test hook: called after every optimizer step with the step number (e.g. to simulate a crash by
// throwing). Not used by the command line.
void set_step_hook(std::function<void(int64_t step)> hook);

}  // namespace vkt::train
