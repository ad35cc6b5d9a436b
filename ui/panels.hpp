#pragma once
// The dashboard's panels, one .cpp each (as Tracy splits its view): loss, learning rate, memory,
// throughput, run, objective. A panel draws into the current ImGui window from a RunSnapshot and its own
// UI state; it never calls into the trainer. Only the run panel writes anything: the control
// atomics of a RunMonitor, when one is given.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/train/monitor.hpp"
#include "engine/train/schedule.hpp"
#include "ui/plot.hpp"

namespace vkt::ui {

// Values derived from a snapshot are cached per panel and rebuilt when this key changes.
struct SnapshotKey {
  uint64_t version = ~0ull;
  size_t steps = 0, evals = 0;
  int64_t last_step = -1;
  bool operator==(const SnapshotKey&) const = default;
};
SnapshotKey snapshot_key(const train::RunSnapshot& snapshot);

// ---- loss -------------------------------------------------------------------------------------

struct LossPanelState {
  float smoothing = 0.6f;    // TensorBoard's default weight of the debiased EMA
  bool x_is_tokens = false;  // x axis: optimizer steps, or trained tokens
  bool log_y = false;
  PlotFrame plot;  // where the plot went in the last frame
  // Cache: x (steps or tokens), raw and smoothed loss, eval points.
  SnapshotKey key;
  float cached_smoothing = -1;
  bool cached_tokens = false;
  std::vector<double> x, raw, smoothed, eval_x, eval_y;
  // eval_x/eval_y hold the main evaluation set: run.json's metric_for_best_model, else eval_loss,
  // else the first one logged. Further --eval-data sets (eval_<name>_loss) are drawn beside it.
  std::string eval_metric;
  struct EvalSeries {
    std::string metric;
    std::vector<double> x, y;
  };
  std::vector<EvalSeries> other_evals;
  // The best evaluation of the main set (lowest, or highest with greater_is_better in run.json's
  // config), marked on the plot; NaN without evaluations.
  double best_x = NAN, best_y = NAN;
};
void draw_loss_panel(const train::RunSnapshot& snapshot, LossPanelState& state);
// Trained tokens at `step`, interpolated between logged steps (evals log no token count).
double tokens_at_step(const std::vector<train::StepMetrics>& steps, double step);

// ---- learning rate ----------------------------------------------------------------------------

struct LearningRatePanelState {
  PlotFrame plot;
  // Cache of the planned schedule: rebuilt when the schedule fields of RunInfo change.
  std::string schedule_key;
  std::string error;                         // why the schedule cannot be drawn (bad kwargs)
  std::vector<double> planned_x, planned_y;  // optimizer step (1-based), learning rate
  SnapshotKey key;
  std::vector<double> logged_x, logged_y;  // the learning rates the trainer reported
};
void draw_learning_rate_panel(const train::RunSnapshot& snapshot, LearningRatePanelState& state);
// The schedule recorded in run.json: type, peak, warmup, max steps and the kwargs
// (num_cycles, lr_end, power, timescale, num_decay_steps, num_stable_steps, decay_type,
// warmup_type, min_lr_ratio). UserError on an unknown type or a malformed kwargs object.
train::ScheduleSettings schedule_settings(const train::RunInfo& info);
// Steps at which to evaluate the planned schedule: all of 1..max_steps up to `max_points`,
// else evenly spaced ones plus the warmup boundary and the last step (ascending, unique).
std::vector<long long> schedule_sample_steps(long long max_steps, long long warmup_steps, size_t max_points = 100000);

// ---- memory -----------------------------------------------------------------------------------

struct MemoryPanelState {
  // Where the bars went in the last frame (tests): the pixel x of 0 bytes and bytes per pixel.
  float bar_origin_x = 0;
  double bytes_per_pixel = 0;
  float planned_bar_y = 0, measured_bar_y = 0;  // vertical centres
  float budget_x = 0;                           // pixel x of the budget line (0: none)
  std::vector<std::string> table_rows;          // the table's row names in the last frame (tests)
};
void draw_memory_panel(const train::RunSnapshot& snapshot, MemoryPanelState& state);

// ---- throughput -------------------------------------------------------------------------------

struct ThroughputPanelState {
  PlotFrame tokens_plot, step_time_plot;
  size_t kernel_rows = 10;  // kernels listed in the table
  SnapshotKey key;
  std::vector<double> steps, tokens_per_second, step_seconds;
};
void draw_throughput_panel(const train::RunSnapshot& snapshot, ThroughputPanelState& state);

// ---- run --------------------------------------------------------------------------------------

struct RunPanelState {
  bool stop_confirm_open = false;
  std::string method;  // the method line drawn in the last frame (tests)
  // Where the buttons were in the last frame (screen pixels; tests click them).
  ImVec2 pause_button{}, save_button{}, stop_button{}, stop_confirm_button{};
};
// controls: the monitor whose pause/save/stop atomics the buttons set; nullptr when only following
// files (the buttons are then disabled).
void draw_run_panel(const train::RunSnapshot& snapshot, RunPanelState& state, train::RunMonitor* controls);
// Seconds until max_steps at the recent pace (the last logged steps), NaN when unknown.
double estimate_remaining_seconds(const train::RunSnapshot& snapshot);
// A run that can still be paused or stopped: starting, running, paused, saving or evaluating.
bool run_is_active(train::RunState state);

// ---- objective (preference rewards, distillation parts) ---------------------------------------

struct ObjectivePanelState {
  SnapshotKey key;
  struct Series {
    std::string metric;        // e.g. "rewards/chosen"
    std::string group;         // the plot it goes in: "rewards", "accuracy", "logps", "distill", ...
    std::vector<double> x, y;  // step, value
  };
  std::vector<Series> series;       // in order of first appearance
  std::vector<std::string> groups;  // one plot each: rewards, accuracy, logps, distill, then others
  std::vector<PlotFrame> plots;     // where each group's plot went in the last frame
};
// True when some logged step has objective metrics (the dashboard then shows the panel).
bool has_objective_metrics(const train::RunSnapshot& snapshot);
void draw_objective_panel(const train::RunSnapshot& snapshot, ObjectivePanelState& state);
// The colour of the objective panel's `index`th series (tests find its vertices).
ImU32 objective_series_color(size_t index);
// "qlora / dora / dpo": --method, --peft-type (not for full) and --objective from run.json's config.
std::string method_label(const train::RunInfo& info);

}  // namespace vkt::ui
