// The learning-rate panel: the whole planned schedule (train::Schedule from run.json's
// schedule fields) from step 1 to max_steps, drawn before the run gets there, with the warmup
// shaded, the rates the trainer logged on top, and a marker at the current step.
#include <imgui.h>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/train/lr_find.hpp"
#include "ui/panels.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

train::ScheduleSettings schedule_settings(const train::RunInfo& info) {
  using train::apply_schedule_kwargs;
  train::ScheduleSettings settings;
  settings.type = train::schedule_from_name(info.schedule_type.empty() ? "constant" : info.schedule_type);
  settings.peak_lr = info.peak_learning_rate;
  settings.warmup_steps = info.warmup_steps;
  settings.max_steps = std::max<long long>(1, info.max_steps);
  apply_schedule_kwargs(settings, info.schedule_kwargs, "run.json");
  return settings;
}

std::vector<long long> schedule_sample_steps(long long max_steps, long long warmup_steps, size_t max_points) {
  std::vector<long long> steps;
  if (max_steps < 1) return steps;
  max_points = std::max<size_t>(max_points, 2);
  long long stride =
      std::max<long long>(1, (max_steps + static_cast<long long>(max_points) - 1) / static_cast<long long>(max_points));
  for (long long step = 1; step <= max_steps; step += stride) steps.push_back(step);
  // Corners of the curve that an even stride could step over.
  for (long long corner : {warmup_steps, warmup_steps + 1, max_steps})
    if (corner >= 1 && corner <= max_steps) steps.push_back(corner);
  std::sort(steps.begin(), steps.end());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());
  return steps;
}

namespace {

std::string key_of(const train::RunInfo& info) {
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, "|%.17g|%lld|%lld|", info.peak_learning_rate,
                static_cast<long long>(info.warmup_steps), static_cast<long long>(info.max_steps));
  return info.schedule_type + numbers + info.schedule_kwargs;
}

void rebuild_plan(const train::RunInfo& info, LearningRatePanelState& state) {
  state.schedule_key = key_of(info);
  state.error.clear();
  state.planned_x.clear();
  state.planned_y.clear();
  if (info.max_steps < 1) {
    state.error = "max_steps is not known yet";
    return;
  }
  try {
    train::Schedule schedule(schedule_settings(info));
    for (long long step : schedule_sample_steps(info.max_steps, info.warmup_steps)) {
      state.planned_x.push_back(static_cast<double>(step));
      state.planned_y.push_back(schedule.learning_rate(step));
    }
  } catch (const UserError& error) {
    state.error = error.what();
    state.planned_x.clear();
    state.planned_y.clear();
  }
}

std::string format_rate(double rate) { return train::format_learning_rate(rate); }

}  // namespace

void draw_learning_rate_panel(const train::RunSnapshot& snapshot, LearningRatePanelState& state) {
  const auto& info = snapshot.info;
  if (state.schedule_key != key_of(info)) rebuild_plan(info, state);
  if (!(state.key == snapshot_key(snapshot))) {
    state.logged_x.clear();
    state.logged_y.clear();
    for (const auto& step : snapshot.steps) {
      state.logged_x.push_back(static_cast<double>(step.step));
      state.logged_y.push_back(step.learning_rate);
    }
    state.key = snapshot_key(snapshot);
  }

  panel_title("Learning rate");
  ImGui::SameLine();
  if (!info.schedule_type.empty())
    ImGui::TextDisabled("%s, peak %s, warmup %lld, %lld steps", info.schedule_type.c_str(),
                        format_rate(info.peak_learning_rate).c_str(), static_cast<long long>(info.warmup_steps),
                        static_cast<long long>(info.max_steps));
  if (!state.error.empty())
    ImGui::TextColored(ImVec4(1, 0.5f, 0.4f, 1), "no planned schedule: %s", state.error.c_str());

  PlotSpec spec;
  spec.id = "learning_rate_plot";
  spec.x_label = "step";
  spec.format_x = [](double x) { return std::to_string(static_cast<long long>(x)); };
  spec.format_y = format_rate;
  spec.padding = 0.06;
  if (!state.planned_x.empty()) {
    spec.x_min = 1;
    spec.x_max = static_cast<double>(std::max<int64_t>(2, info.max_steps));
    spec.y_min = 0;  // a learning rate plot reads best from zero
  }
  // The logged rates under the planned curve: where they differ, they show.
  spec.series.push_back({"logged", state.logged_x, state.logged_y, colors::learning_rate_logged,
                         SeriesStyle::faint_line, !state.logged_x.empty()});
  spec.series.push_back({"planned", state.planned_x, state.planned_y, colors::learning_rate, SeriesStyle::line, true});
  if (info.warmup_steps > 0)
    spec.shades.push_back({1.0, static_cast<double>(info.warmup_steps), colors::warmup_shade,
                           "warmup (" + std::to_string(info.warmup_steps) + " steps)"});
  if (snapshot.current_step > 0) {
    std::string label = "step " + std::to_string(snapshot.current_step);
    if (!state.planned_x.empty()) {
      size_t i = nearest_index(state.planned_x, static_cast<double>(snapshot.current_step));
      label += ": " + format_rate(state.planned_y[i]);
    }
    spec.markers.push_back({static_cast<double>(snapshot.current_step), colors::current_step, label});
  }
  state.plot = draw_plot(spec, ImVec2(0, 0));
}

}  // namespace vkt::ui
