// The loss panel: raw training loss (faint) behind its smoothed curve (TensorBoard's debiased
// EMA), evaluation losses as points, x in steps or tokens, optional log-scale y.
#include <imgui.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ui/panels.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

SnapshotKey snapshot_key(const train::RunSnapshot& snapshot) {
  return {snapshot.version, snapshot.steps.size(), snapshot.evals.size(),
          snapshot.steps.empty() ? -1 : snapshot.steps.back().step};
}

double tokens_at_step(const std::vector<train::StepMetrics>& steps, double step) {
  if (steps.empty()) return 0;
  auto after = std::lower_bound(steps.begin(), steps.end(), step,
                                [](const train::StepMetrics& m, double s) { return static_cast<double>(m.step) < s; });
  if (after == steps.begin()) return static_cast<double>(after->tokens) * (after->step > 0 ? step / after->step : 1.0);
  if (after == steps.end()) {
    // Past the last logged step: extend at the average tokens per step.
    const auto& last = steps.back();
    return last.step > 0 ? static_cast<double>(last.tokens) * step / static_cast<double>(last.step) : 0.0;
  }
  const auto& before = *(after - 1);
  double span = static_cast<double>(after->step - before.step);
  double t = span > 0 ? (step - static_cast<double>(before.step)) / span : 0.0;
  return static_cast<double>(before.tokens) + t * static_cast<double>(after->tokens - before.tokens);
}

namespace {

void rebuild(const train::RunSnapshot& snapshot, LossPanelState& state) {
  const auto& steps = snapshot.steps;
  state.x.resize(steps.size());
  state.raw.resize(steps.size());
  for (size_t i = 0; i < steps.size(); i++) {
    state.x[i] = state.x_is_tokens ? static_cast<double>(steps[i].tokens) : static_cast<double>(steps[i].step);
    state.raw[i] = steps[i].loss;
  }
  state.smoothed = smooth_debiased_ema(state.raw, state.smoothing);
  // The main evaluation set and the direction of "best", from run.json's config.
  bool greater = false;
  std::string metric;
  try {
    nlohmann::json config = nlohmann::json::parse(snapshot.info.config_json);
    greater = config.value("greater_is_better", false);
    metric = config.value("metric_for_best_model", "");
    if (!metric.empty() && metric.rfind("eval_", 0) != 0) metric = "eval_" + metric;
  } catch (const std::exception&) {}
  auto logged = [&](const std::string& name) {
    return std::any_of(snapshot.evals.begin(), snapshot.evals.end(), [&](const auto& e) { return e.metric == name; });
  };
  if (metric.empty() || !logged(metric)) metric = "eval_loss";
  if (!logged(metric) && !snapshot.evals.empty()) metric = snapshot.evals.front().metric;
  state.eval_metric = metric;
  state.eval_x.clear();
  state.eval_y.clear();
  state.other_evals.clear();
  for (const auto& eval : snapshot.evals) {
    double step = static_cast<double>(eval.step);
    double x = state.x_is_tokens ? tokens_at_step(steps, step) : step;
    if (eval.metric != metric) {
      auto series = std::find_if(state.other_evals.begin(), state.other_evals.end(),
                                 [&](const auto& s) { return s.metric == eval.metric; });
      if (series == state.other_evals.end()) series = state.other_evals.insert(series, {eval.metric, {}, {}});
      series->x.push_back(x);
      series->y.push_back(eval.eval_loss);
      continue;
    }
    state.eval_x.push_back(x);
    state.eval_y.push_back(eval.eval_loss);
  }
  // Evaluations arrive in step order; keep the x ascending for the plot's nearest-x search anyway.
  std::vector<size_t> order(state.eval_x.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return state.eval_x[a] < state.eval_x[b]; });
  std::vector<double> x, y;
  for (size_t i : order) {
    x.push_back(state.eval_x[i]);
    y.push_back(state.eval_y[i]);
  }
  state.eval_x = std::move(x);
  state.eval_y = std::move(y);
  // The best step, in the direction run.json's config says (losses: lower is better).
  state.best_x = state.best_y = NAN;
  for (size_t i = 0; i < state.eval_y.size(); i++)
    if (std::isnan(state.best_y) || (greater ? state.eval_y[i] > state.best_y : state.eval_y[i] < state.best_y)) {
      state.best_x = state.eval_x[i];
      state.best_y = state.eval_y[i];
    }
  state.key = snapshot_key(snapshot);
  state.cached_smoothing = state.smoothing;
  state.cached_tokens = state.x_is_tokens;
}

}  // namespace

void draw_loss_panel(const train::RunSnapshot& snapshot, LossPanelState& state) {
  panel_title("Loss");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(160);
  ImGui::SliderFloat("smoothing", &state.smoothing, 0.0f, 0.999f, "%.3f");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("Debiased exponential moving average, as in TensorBoard (0: raw values)");
  ImGui::SameLine();
  ImGui::TextUnformatted("x:");
  ImGui::SameLine();
  int axis = state.x_is_tokens ? 1 : 0;
  ImGui::RadioButton("step", &axis, 0);
  ImGui::SameLine();
  ImGui::RadioButton("tokens", &axis, 1);
  state.x_is_tokens = axis == 1;
  ImGui::SameLine();
  ImGui::Checkbox("log y", &state.log_y);

  if (!(state.key == snapshot_key(snapshot)) || state.cached_smoothing != state.smoothing ||
      state.cached_tokens != state.x_is_tokens)
    rebuild(snapshot, state);

  // One line of the latest numbers, the way one reads a training log.
  if (!snapshot.steps.empty()) {
    const auto& last = snapshot.steps.back();
    ImGui::Text("step %lld   loss %.4f   smoothed %.4f", static_cast<long long>(last.step), last.loss,
                state.smoothed.back());
    if (!state.eval_y.empty()) {
      ImGui::SameLine();
      ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(colors::eval_loss), "   %s %.4f (best %.4f at %.0f)",
                         state.eval_metric.c_str(), state.eval_y.back(), state.best_y, state.best_x);
    }
  } else {
    ImGui::TextDisabled("waiting for the first logged step");
  }

  PlotSpec spec;
  spec.id = "loss_plot";
  spec.x_label = state.x_is_tokens ? "tokens" : "step";
  spec.log_y = state.log_y;
  spec.format_x = [tokens = state.x_is_tokens](double x) {
    char text[32];
    std::snprintf(text, sizeof text, tokens ? "%.4g" : "%.0f", x);
    return std::string(text);
  };
  spec.series.push_back({"loss (raw)", state.x, state.raw, colors::loss_raw, SeriesStyle::faint_line, true});
  spec.series.push_back({"loss (smoothed)", state.x, state.smoothed, colors::loss, SeriesStyle::line, true});
  if (!state.eval_x.empty())
    spec.series.push_back(
        {state.eval_metric, state.eval_x, state.eval_y, colors::eval_loss, SeriesStyle::points, true});
  for (size_t i = 0; i < state.other_evals.size(); i++) {
    const auto& other = state.other_evals[i];
    spec.series.push_back({other.metric, other.x, other.y, colors::other_eval(i), SeriesStyle::points, true});
  }
  if (!std::isnan(state.best_x)) spec.markers.push_back({state.best_x, colors::best_step, "best"});
  state.plot = draw_plot(spec, ImVec2(0, 0));
}

}  // namespace vkt::ui
