#pragma once
// `vktune lr-find`: the learning-rate range test (Smith 2015; fastai's lr_find). One training run
// through train::train whose learning rate grows geometrically from start_lr to end_lr over N
// steps (schedule exponential_ramp), loss logged every step, stopped once the smoothed loss
// diverges (a causal EMA above divergence_factor x its minimum, or not finite). From the curve up
// to there, smoothed without lag: the steepest descent of the smoothed loss against log10(lr) (the suggestion) and a safe value, the rate at the
// minimum / 10, which lies below the divergence point by construction.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/train/advice.hpp"
#include "engine/train/config.hpp"

namespace vkt::train {

struct LrFindSettings {
  double start_lr = 1e-7;
  double end_lr = 1e-2;
  // 200 steps: 40 per decade of the default range. The loss answers a rate with a lag (AdamW's
  // first moment averages ~10 steps), so a faster ramp puts the steepest point at a higher rate:
  // on the demo task 60 steps suggest 2.6e-3, 100 steps 1.1e-3, 200 steps 4.4e-4.
  int64_t steps = 200;
  double smoothing = 0.9;          // weight of the debiased EMA (TensorBoard/fastai smoothing)
  double divergence_factor = 4.0;  // smoothed loss above this x its running minimum: diverged
  int64_t skip_start = 2;          // first points ignored for the steepest slope (noisy)
};

// The book's range for finetuning learning rates (the hyperparameter chapter).
constexpr double book_min_lr = 1e-7, book_max_lr = 1e-3;

struct LrCurve {
  std::vector<double> learning_rate;  // (n) the rate each step used, ascending
  std::vector<double> loss;           // (n) that step's loss
};

struct LrSuggestion {
  std::vector<double> smoothed;       // (n) zero-phase smoothed loss (NaN from the divergence on)
  size_t used = 0;                    // points before the divergence (all when none)
  std::optional<size_t> divergence;   // first diverged point
  std::optional<size_t> minimum;      // lowest smoothed loss before the divergence
  std::optional<size_t> steepest;     // most negative d smoothed / d log10(lr) up to the minimum
  double suggested_lr = 0;            // at `steepest` (0 when the curve never descends)
  double safe_lr = 0;                 // rate at `minimum` / 10
  double divergence_lr = 0;           // 0 when it did not diverge
  std::vector<std::string> warnings;  // outside the book's range, above the pretraining rate
};

// Debiased exponential moving average (the first values are not pulled towards 0); non-finite
// values pass through and stay out of the average.
std::vector<double> smooth_loss(const std::vector<double>& loss, double weight);
// The same run forwards then backwards (as scipy's filtfilt): no lag. A causal EMA shifts the curve
// right by about weight / (1 - weight) steps, which moved the steepest point by a decade of rates
// on the demo task (9 steps of a 60-step ramp over 7 decades).
std::vector<double> smooth_loss_zero_phase(const std::vector<double>& loss, double weight);
// First index whose smoothed loss is not finite or above factor x the minimum so far.
std::optional<size_t> find_divergence(const std::vector<double>& smoothed, double factor);
LrSuggestion suggest_learning_rate(const LrCurve& curve, const LrFindSettings& settings,
                                   const std::optional<PretrainingLr>& pretraining = std::nullopt);

struct LrFindResult {
  LrCurve curve;
  LrSuggestion suggestion;
  LrFindSettings settings;
  std::optional<PretrainingLr> pretraining;
  bool stopped_at_divergence = false;
  int stop_signal = 0;              // SIGINT/SIGTERM/SIGHUP ended the run early
  std::filesystem::path json_file;  // OUTPUT/lr_find.json: curve + suggestion (the panel reads it)
};

// Runs the range test with `config`'s model, data and method (its learning rate, schedule,
// evaluation and checkpointing are replaced) into config.output_dir and writes lr_find.json.
LrFindResult run_lr_find(TrainConfig config, const LrFindSettings& settings,
                         const std::optional<PretrainingLr>& pretraining);

std::string lr_find_json(const LrFindResult& result);
LrFindResult lr_find_from_json(const std::string& text);  // UserError on a malformed file
std::string format_lr_find(const LrFindResult& result);   // the terminal summary
std::string format_learning_rate(double rate);            // "0.00123": 3 significant digits

}  // namespace vkt::train
