#pragma once
// What a training run publishes for people to watch: the live RunMonitor (the trainer thread
// writes, the dashboard thread reads snapshots) and its files, metrics.jsonl (one JSON object
// per logged step or evaluation) and run.json (configuration, device, plan). A MetricsFollower
// rebuilds the same monitor from those files while they grow (`vktune dashboard RUN_DIR`).
#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/vk/memory.hpp"

namespace vkt::train {

// One logged optimizer step. metrics.jsonl keys in parentheses.
struct StepMetrics {
  int64_t step = 0;              // (step) optimizer steps done
  double epoch = 0;              // (epoch) fractional epochs done
  double loss = 0;               // (loss) weighted mean loss of this step
  double learning_rate = 0;      // (lr) learning rate used by this step
  double grad_norm = 0;          // (grad_norm) global norm before clipping
  double tokens_per_second = 0;  // (tokens_per_sec) trained tokens per second over the logging window
  double step_seconds = 0;       // (step_time_s) wall time of one optimizer step
  double elapsed_seconds = 0;    // (elapsed_s) since the run started
  int64_t tokens = 0;            // (tokens) trained tokens so far (non-padding)
  // fp16 loss scaling only (written when loss_scale > 0): the scale of the next step and the
  // steps skipped so far for an Inf/NaN gradient (loss_scaler.hpp).
  double loss_scale = 0;      // (loss_scale)
  int64_t skipped_steps = 0;  // (skipped_steps)
  // (memory) {"<category>": bytes, ...} current bytes per ledger category, and offloaded bytes
  // of optimizer state separately as "optimizer_state_offload".
  std::array<uint64_t, vk::category_count> memory_bytes{};
  uint64_t offloaded_optimizer_bytes = 0;
  // Data parallel (mpirun), written only with several ranks: (rank_step_time_s) [rank] each rank's
  // step time, (all_reduce_s) rank 0's time per step in the gradient all-reduce that the backward
  // did not hide (waiting included), (all_reduce_busy_s) its time in the sums in all, hidden or not.
  std::vector<double> rank_step_seconds;
  double all_reduce_seconds = 0, all_reduce_busy_seconds = 0;
  // (name: value) objective-specific metrics under TRL's names, e.g. rewards/accuracies (DPO).
  std::vector<std::pair<std::string, double>> extra;
};

// The steps since the last logging step: all of them (the logged loss is their mean) and the training
// speed over them (StepMetrics' tokens_per_sec and step_time_s). The logging step is profiled
// (timestamp queries around each of its dispatches, for the kernel table): its time counts only when
// it is its window's only step, since the queries are measurement, not training (a GPU may serialize
// on them).
struct LoggingWindow {
  double seconds = 0;   // wall time of the counted steps
  int64_t tokens = 0;   // their trained tokens
  int64_t counted = 0;  // steps in seconds and tokens
  int64_t steps = 0;    // every step of the window
  void add(double step_seconds, int64_t step_tokens, bool profiled);
  double step_seconds() const { return counted ? seconds / double(counted) : 0; }
  double tokens_per_second() const { return seconds > 0 ? double(tokens) / seconds : 0; }
};

struct EvalMetrics {
  int64_t step = 0;                  // (step)
  double epoch = 0;                  // (epoch)
  double eval_loss = 0;              // (eval_loss, or eval_<name>_loss for a named --eval-data set)
  double elapsed_seconds = 0;        // (elapsed_s)
  std::string metric = "eval_loss";  // the key above: which evaluation set
};

struct KernelTime {
  std::string name;
  double milliseconds = 0;  // GPU time per optimizer step
};

// A finer row of the memory plan than the ledger's categories (run.json "memory_parts"): the
// parameters and gradients of one kind of trainable tensor (LoRA, DoRA magnitudes, IA3 vectors, soft
// prompt, modules_to_save, trainable tokens) or the distillation teacher. planned: the plan's bytes;
// measured: the bytes of the buffers allocated under those names (0: not measured).
struct MemoryPart {
  std::string name;
  uint64_t planned = 0, measured = 0;
};

// Static facts about the run (run.json).
struct RunInfo {
  std::string config_json;  // the resolved configuration (train::to_json)
  std::string device;       // the capability line
  int64_t max_steps = 0;
  std::string schedule_type;  // lr_scheduler_type
  double peak_learning_rate = 0;
  double loraplus_lr_ratio = 1;  // LoRA+: lora_B steps at the lr times this
  int64_t warmup_steps = 0;
  std::string schedule_kwargs = "{}";
  std::array<uint64_t, vk::category_count> planned_bytes{};  // the memory plan per category
  uint64_t planned_offload_bytes = 0;
  uint64_t device_budget_bytes = 0;  // VK_EXT_memory_budget (or heap size) of the device
  std::string started_at;            // ISO 8601
  std::string identity_json = "{}";  // which run this is (run_identity.hpp): model, data, trajectory options
  // (trainable_parameters) [[kind, count], ...] e.g. "LoRA A", "DoRA magnitudes" (run_parts.hpp); empty in
  // run.json files written before it existed.
  std::vector<std::pair<std::string, uint64_t>> trainable_parameters;
  std::vector<MemoryPart> memory_parts;  // (memory_parts) [{"name", "planned", "measured"}, ...]
};

enum class RunState { starting, running, paused, saving, evaluating, finished, stopped, failed };
const char* run_state_name(RunState state);

struct RunSnapshot {
  RunInfo info;
  RunState state = RunState::starting;
  std::string status_message;      // e.g. the error when failed
  std::vector<StepMetrics> steps;  // every logged step (the UI subsamples when drawing)
  std::vector<EvalMetrics> evals;
  std::vector<KernelTime> kernels;  // top kernels by GPU time, descending
  int64_t current_step = 0;         // latest step, logged or not
  double current_elapsed = 0;
  uint64_t version = 0;  // increases with every change
};

// Thread-safe hub between the trainer and its watchers. Watchers may ask the trainer to pause,
// save a checkpoint now, or stop (gracefully: it saves a checkpoint first).
class RunMonitor {
 public:
  void set_info(const RunInfo& info);
  void set_state(RunState state, const std::string& message = {});
  void push_step(const StepMetrics& metrics);
  void push_eval(const EvalMetrics& metrics);
  void set_kernels(std::vector<KernelTime> kernels);
  void set_progress(int64_t step, double elapsed_seconds);
  // Forgets logged steps, evaluations and kernel times (a new run replaced the files followed).
  void clear_metrics();
  RunSnapshot snapshot() const;
  uint64_t version() const;

  std::atomic<bool> pause_requested{false};
  std::atomic<bool> save_requested{false};
  std::atomic<bool> stop_requested{false};

 private:
  mutable std::mutex mutex_;
  RunSnapshot state_;
};

// metrics.jsonl / run.json encoding, shared by the writer (trainer) and the follower.
std::string step_to_json_line(const StepMetrics& metrics);
std::string eval_to_json_line(const EvalMetrics& metrics);
// {"step": N, "kernels": {"name": ms, ...}}: GPU time per kernel in one optimizer step.
std::string kernels_to_json_line(int64_t step, const std::vector<KernelTime>& kernels);
std::string run_info_to_json(const RunInfo& info, RunState state);
// Parses one metrics.jsonl line into the monitor (a step or an eval line); false if malformed.
bool apply_metrics_line(RunMonitor& monitor, const std::string& line);
RunInfo run_info_from_json(const std::string& text, RunState* state = nullptr);

// Follows RUN_DIR/metrics.jsonl (and run.json) as they grow: poll() reads what was appended
// since the last call (complete lines only) and returns how many lines it applied.
class MetricsFollower {
 public:
  MetricsFollower(std::filesystem::path run_dir, RunMonitor& monitor);
  size_t poll();

 private:
  std::filesystem::path run_dir_;
  RunMonitor& monitor_;
  uint64_t offset_ = 0;
  std::string partial_line_;
  std::filesystem::file_time_type run_json_time_{};
};

}  // namespace vkt::train
