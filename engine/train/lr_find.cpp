#include "engine/train/lr_find.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/train/trainer.hpp"

namespace vkt::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<double> smooth_loss(const std::vector<double>& loss, double weight) {
  std::vector<double> smoothed(loss.size());
  double average = 0;
  int64_t count = 0;
  for (size_t i = 0; i < loss.size(); i++) {
    if (!std::isfinite(loss[i])) {
      smoothed[i] = loss[i];
      continue;
    }
    average = weight * average + (1 - weight) * loss[i];
    count++;
    smoothed[i] = average / (1 - std::pow(weight, double(count)));
  }
  return smoothed;
}

std::vector<double> smooth_loss_zero_phase(const std::vector<double>& loss, double weight) {
  std::vector<double> forward = smooth_loss(loss, weight);
  std::reverse(forward.begin(), forward.end());
  std::vector<double> both = smooth_loss(forward, weight);
  std::reverse(both.begin(), both.end());
  return both;
}

std::optional<size_t> find_divergence(const std::vector<double>& smoothed, double factor) {
  double lowest = INFINITY;
  for (size_t i = 0; i < smoothed.size(); i++) {
    if (!std::isfinite(smoothed[i]) || (i > 0 && smoothed[i] > factor * lowest)) return i;
    lowest = std::min(lowest, smoothed[i]);
  }
  return std::nullopt;
}

std::string format_learning_rate(double rate) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", rate);
  return text;
}

LrSuggestion suggest_learning_rate(const LrCurve& curve, const LrFindSettings& settings,
                                   const std::optional<PretrainingLr>& pretraining) {
  LrSuggestion s;
  const auto& lr = curve.learning_rate;
  // Divergence as the run judged it (causal); the shape of the curve without the EMA's lag.
  s.divergence = find_divergence(smooth_loss(curve.loss, settings.smoothing), settings.divergence_factor);
  s.used = s.divergence ? *s.divergence : curve.loss.size();
  std::vector<double> kept(curve.loss.begin(), curve.loss.begin() + std::ptrdiff_t(s.used));
  s.smoothed = smooth_loss_zero_phase(kept, settings.smoothing);
  s.smoothed.resize(curve.loss.size(), NAN);
  if (s.divergence) s.divergence_lr = lr[*s.divergence];
  if (s.used == 0) {
    s.warnings.push_back("the loss diverged at the first step: lower the start rate");
    return s;
  }
  size_t minimum = 0;
  for (size_t i = 1; i < s.used; i++)
    if (s.smoothed[i] < s.smoothed[minimum]) minimum = i;
  s.minimum = minimum;
  s.safe_lr = lr[minimum] / 10;
  // np.gradient against log10(lr): central differences inside, one-sided at the ends.
  auto slope = [&](size_t i) {
    size_t lo = i == 0 ? 0 : i - 1, hi = std::min(i + 1, s.used - 1);
    double run = std::log10(lr[hi]) - std::log10(lr[lo]);
    return run > 0 ? (s.smoothed[hi] - s.smoothed[lo]) / run : 0.0;
  };
  // A fall within rounding of the start is no descent (a flat curve's smoothing leaves ~1e-15).
  if (!(s.smoothed[minimum] < s.smoothed[0] - 1e-3 * std::abs(s.smoothed[0]))) {
    s.warnings.push_back("the smoothed loss never falls: no steepest descent (try a higher end rate or more steps)");
    return s;
  }
  double steepest_slope = 0;
  for (size_t i = std::min<size_t>(size_t(settings.skip_start), minimum); i <= minimum; i++)
    if (double g = slope(i); g < steepest_slope) {
      steepest_slope = g;
      s.steepest = i;
    }
  if (!s.steepest) {
    s.warnings.push_back("the smoothed loss never falls: no steepest descent (try a higher end rate or more steps)");
    return s;
  }
  s.suggested_lr = lr[*s.steepest];
  if (s.suggested_lr < book_min_lr || s.suggested_lr > book_max_lr)
    s.warnings.push_back("the suggestion " + format_learning_rate(s.suggested_lr) +
                         " is outside the book's range [1e-7, 1e-3]");
  if (pretraining && s.suggested_lr > pretraining->learning_rate)
    s.warnings.push_back("the suggestion " + format_learning_rate(s.suggested_lr) +
                         " exceeds the base's pretraining rate " + format_learning_rate(pretraining->learning_rate) +
                         " (" + pretraining->source + "); the book starts finetuning at 0.1-1x of it");
  return s;
}

LrFindResult run_lr_find(TrainConfig config, const LrFindSettings& settings,
                         const std::optional<PretrainingLr>& pretraining) {
  if (!(settings.start_lr > 0 && settings.start_lr < settings.end_lr))
    throw UserError("lr-find needs 0 < --start-lr < --end-lr", "e.g. --start-lr 1e-7 --end-lr 1e-2");
  if (settings.steps < 5) throw UserError("lr-find needs at least 5 --num-steps", "e.g. --num-steps 100");
  if (!(settings.smoothing >= 0 && settings.smoothing < 1))
    throw UserError("--smoothing must be in [0, 1)", "e.g. 0.9");
  config.learning_rate = settings.end_lr;
  config.lr_scheduler_type = ScheduleType::exponential_ramp;
  config.lr_scheduler_kwargs = json{{"lr_start", settings.start_lr}}.dump();
  config.warmup_steps = 0;
  config.max_steps = settings.steps;
  config.logging_steps = 1;  // a loss for every rate
  config.eval_data.clear();
  config.eval_steps = 0;
  config.save_steps = 0;
  config.headless = true;
  config.dashboard = false;

  LrFindResult result;
  result.settings = settings;
  result.pretraining = pretraining;
  RunMonitor monitor;
  // Watches the logged losses and asks the trainer to stop once they diverge.
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    uint64_t seen = 0;
    while (!done) {
      if (monitor.version() != seen) {
        RunSnapshot snapshot = monitor.snapshot();
        seen = snapshot.version;
        std::vector<double> loss;
        for (const auto& step : snapshot.steps) loss.push_back(step.loss);
        if (find_divergence(smooth_loss(loss, settings.smoothing), settings.divergence_factor)) {
          monitor.stop_requested = true;
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  try {
    TrainSummary summary = train(config, &monitor);
    result.stop_signal = summary.stop_signal;
  } catch (const UserError& error) {
    // A non-finite loss after some steps is the divergence this test looks for; anything before
    // the first steps (bad data, flags, memory) is the user's error.
    if (monitor.snapshot().steps.size() < 3) {
      done = true;
      watcher.join();
      throw;
    }
    log::info(std::string("lr-find: the run stopped: ") + error.what());
    result.stopped_at_divergence = true;
  } catch (...) {
    done = true;
    watcher.join();
    throw;
  }
  done = true;
  watcher.join();
  result.stopped_at_divergence = result.stopped_at_divergence || (monitor.stop_requested && !result.stop_signal);
  for (const auto& step : monitor.snapshot().steps) {
    result.curve.learning_rate.push_back(step.learning_rate);
    result.curve.loss.push_back(step.loss);
  }
  if (result.curve.loss.size() < 3)
    throw UserError("lr-find: only " + std::to_string(result.curve.loss.size()) + " steps ran, too few for a curve",
                    "lower --start-lr, or check the data with `vktune train`");
  result.suggestion = suggest_learning_rate(result.curve, settings, pretraining);
  result.json_file = fs::path(config.output_dir) / "lr_find.json";
  write_file_atomically(result.json_file, lr_find_json(result) + "\n");
  return result;
}

std::string lr_find_json(const LrFindResult& r) {
  const LrSuggestion& s = r.suggestion;
  json out = {{"learning_rate", r.curve.learning_rate},
              {"loss", r.curve.loss},
              {"smoothed", s.smoothed},
              {"settings",
               {{"start_lr", r.settings.start_lr},
                {"end_lr", r.settings.end_lr},
                {"steps", r.settings.steps},
                {"smoothing", r.settings.smoothing},
                {"divergence_factor", r.settings.divergence_factor}}},
              {"suggested_lr", s.suggested_lr},
              {"safe_lr", s.safe_lr},
              {"divergence_lr", s.divergence_lr},
              {"warnings", s.warnings},
              {"stopped_at_divergence", r.stopped_at_divergence}};
  for (auto [key, index] : {std::pair{"steepest", s.steepest}, {"minimum", s.minimum}, {"divergence", s.divergence}})
    out[key] = index ? json(*index) : json(nullptr);
  if (r.pretraining)
    out["pretraining_lr"] = {{"learning_rate", r.pretraining->learning_rate}, {"source", r.pretraining->source}};
  // Non-finite losses (the divergence) are written as null, as JSON has no NaN.
  return out.dump(2);
}

LrFindResult lr_find_from_json(const std::string& text) {
  LrFindResult r;
  try {
    json in = json::parse(text);
    for (const auto& v : in.at("learning_rate")) r.curve.learning_rate.push_back(v.get<double>());
    for (const auto& v : in.at("loss")) r.curve.loss.push_back(v.is_number() ? v.get<double>() : NAN);
    const json& settings = in.at("settings");
    r.settings.start_lr = settings.at("start_lr");
    r.settings.end_lr = settings.at("end_lr");
    r.settings.steps = settings.at("steps");
    r.settings.smoothing = settings.at("smoothing");
    r.settings.divergence_factor = settings.at("divergence_factor");
    if (in.contains("pretraining_lr"))
      r.pretraining = PretrainingLr{in["pretraining_lr"].at("learning_rate"), in["pretraining_lr"].at("source")};
    r.stopped_at_divergence = in.value("stopped_at_divergence", false);
  } catch (const json::exception& error) {
    throw UserError(std::string("lr_find.json is malformed: ") + error.what(), "run vktune lr-find again");
  }
  if (r.curve.learning_rate.size() != r.curve.loss.size())
    throw UserError("lr_find.json is malformed: learning_rate and loss differ in length", "run vktune lr-find again");
  r.suggestion = suggest_learning_rate(r.curve, r.settings, r.pretraining);  // recomputed, not trusted
  return r;
}

std::string format_lr_find(const LrFindResult& r) {
  const LrSuggestion& s = r.suggestion;
  std::string text = "lr-find: " + std::to_string(r.curve.loss.size()) + " steps, " +
                     format_learning_rate(r.settings.start_lr) + " -> " +
                     format_learning_rate(r.curve.learning_rate.empty() ? 0 : r.curve.learning_rate.back()) + "\n";
  char line[256];
  if (s.minimum) {
    std::snprintf(line, sizeof line, "  lowest smoothed loss %.4f at lr %s\n", s.smoothed[*s.minimum],
                  format_learning_rate(r.curve.learning_rate[*s.minimum]).c_str());
    text += line;
  }
  text += s.divergence ? "  diverged at lr " + format_learning_rate(s.divergence_lr) + " (smoothed loss above " +
                             format_learning_rate(r.settings.divergence_factor) + "x its minimum)\n"
                       : "  did not diverge up to the end rate\n";
  if (s.steepest) text += "  suggested (steepest descent): " + format_learning_rate(s.suggested_lr) + "\n";
  if (s.minimum) text += "  safe (minimum / 10):          " + format_learning_rate(s.safe_lr) + "\n";
  text += r.pretraining ? "  base's pretraining rate:      " + format_learning_rate(r.pretraining->learning_rate) +
                              " (" + r.pretraining->source + ")\n"
                        : "  base's pretraining rate:      unknown (no run.json, trainer_state.json or "
                          "training_args.json in the model folder; --pretraining-lr gives it)\n";
  for (const auto& warning : s.warnings) text += "  warning: " + warning + "\n";
  return text;
}

}  // namespace vkt::train
