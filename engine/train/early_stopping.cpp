#include "engine/train/early_stopping.hpp"

#include <cmath>

#include "engine/base/error.hpp"

namespace vkt::train {

BestModelSettings best_model_settings(const TrainConfig& c) {
  BestModelSettings s;
  s.load_best = c.load_best_model_at_end;
  s.patience = c.early_stopping_patience;
  s.threshold = c.early_stopping_threshold;
  s.greater_is_better = c.greater_is_better;
  if (!c.metric_for_best_model.empty())
    s.metric =
        c.metric_for_best_model.rfind("eval_", 0) == 0 ? c.metric_for_best_model : "eval_" + c.metric_for_best_model;
  if (c.early_stopping_patience < 0)
    throw UserError("--early-stopping-patience must not be negative", "e.g. 3 (0 turns early stopping off)");
  if (c.early_stopping_threshold < 0)
    throw UserError("--early-stopping-threshold must not be negative", "e.g. 0.01 (the default 0: any improvement)");
  if (!s.active()) return s;
  const std::string what = s.load_best ? "--load-best-model-at-end" : "--early-stopping-patience";
  if (c.eval_data.empty())
    throw UserError(what + " compares evaluations, and no --eval-data is given", "add --eval-data FILE.jsonl");
  if (c.eval_steps <= 0)
    throw UserError(what + " needs evaluations during the run: --eval-steps is 0 (only at the end)",
                    "set --eval-steps N, e.g. the same as --save-steps");
  if (s.load_best && (c.save_steps <= 0 || c.save_steps % c.eval_steps != 0))
    throw UserError(
        "--load-best-model-at-end requires the saving steps to be a round multiple of the evaluation "
        "steps, but found --save-steps " +
            std::to_string(c.save_steps) + " and --eval-steps " + std::to_string(c.eval_steps),
        "HF's rule: a checkpoint must exist at evaluation steps; e.g. --save-steps " + std::to_string(c.eval_steps) +
            " --eval-steps " + std::to_string(c.eval_steps));
  return s;
}

bool BestModelTracker::observe(int64_t step, double value, bool kept) {
  // EarlyStoppingCallback.on_evaluate runs before Trainer._determine_best_metric: the patience
  // check compares with the best metric before this evaluation.
  if (settings_.patience > 0) {
    if (!state_.best_metric ||
        (better(value, *state_.best_metric) && std::abs(value - *state_.best_metric) > settings_.threshold))
      state_.patience_counter = 0;
    else
      state_.patience_counter++;
  }
  if (!state_.best_metric || better(value, *state_.best_metric)) {
    state_.best_metric = value;
    state_.best_step = step;
  }
  if (kept) keep(step, value);
  return settings_.patience > 0 && state_.patience_counter >= settings_.patience;
}

void BestModelTracker::keep(int64_t step, double value) {
  if (state_.best_kept_step >= 0 && !better(value, state_.best_kept_metric)) return;
  state_.best_kept_step = step;
  state_.best_kept_metric = value;
}

}  // namespace vkt::train
