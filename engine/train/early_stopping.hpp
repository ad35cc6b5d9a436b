#pragma once
// HF Trainer's load_best_model_at_end and EarlyStoppingCallback: which evaluated state is the
// best, when to stop, and what trainer_state.json keeps of it so that a resumed run decides the
// same. Semantics (transformers 5.23):
//  - metric_for_best_model "loss" means "eval_loss" (an "eval_" prefix is added when missing);
//    greater_is_better defaults to false (every metric vktune evaluates is a loss).
//  - Patience counts evaluations whose metric did not beat the best one before them by more than
//    early_stopping_threshold; reaching early_stopping_patience stops the run.
//  - The best metric moves on any strict improvement (no threshold), as HF's _determine_best_metric.
//  - load_best_model_at_end needs the save steps to be a round multiple of the eval steps (HF's
//    rule); the state loaded at the end is the best of the kept ones: the checkpoints saved at
//    evaluation steps and the final weights.
#include <cstdint>
#include <optional>
#include <string>

#include "engine/train/config.hpp"

namespace vkt::train {

struct BestModelSettings {
  std::string metric = "eval_loss";  // the metrics.jsonl key compared
  bool greater_is_better = false;
  int64_t patience = 0;  // 0: no early stopping
  double threshold = 0;
  bool load_best = false;
  bool active() const { return load_best || patience > 0; }
};

// The settings from the flags; UserError with HF's rule when they do not fit together (eval data
// and --eval-steps needed, --save-steps a multiple of --eval-steps for --load-best-model-at-end).
BestModelSettings best_model_settings(const TrainConfig& config);

// What survives a resume (trainer_state.json keys in parentheses).
struct BestModelState {
  std::optional<double> best_metric;  // (best_metric) the best of every evaluation so far
  int64_t best_step = -1;             // (best_global_step) where it was measured
  int64_t best_kept_step = -1;        // (best_checkpoint_step) the best kept state (-1: none)
  double best_kept_metric = 0;        // (best_checkpoint_metric)
  int64_t patience_counter = 0;       // (early_stopping_patience_counter)
};

class BestModelTracker {
 public:
  explicit BestModelTracker(BestModelSettings settings, BestModelState state = {})
      : settings_(std::move(settings)), state_(state) {}
  // One evaluation at `step`; `kept`: its weights are kept (a checkpoint is saved at this step, or
  // they are the final weights). Returns true when early stopping asks the run to stop.
  bool observe(int64_t step, double value, bool kept);
  // The weights evaluated at `step` are kept after all (the run ends there).
  void keep(int64_t step, double value);
  // True when `a` is better than `b` in the direction of the metric (strictly).
  bool better(double a, double b) const { return settings_.greater_is_better ? a > b : a < b; }
  const BestModelState& state() const { return state_; }
  const BestModelSettings& settings() const { return settings_; }

 private:
  BestModelSettings settings_;
  BestModelState state_;
};

}  // namespace vkt::train
