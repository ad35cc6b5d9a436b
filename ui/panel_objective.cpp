// The objective panel, drawn when a run logs objective-specific metrics (StepMetrics::extra): for
// preference runs TRL's rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies and
// logps/chosen, logps/rejected; for distillation the loss's parts distill/kl and distill/ce. One
// plot per group ("rewards", "accuracy", "logps", "distill", ...), the latest values in the title line.
#include <imgui.h>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ui/panels.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

namespace {

// rewards/accuracies is a fraction in [0, 1]: a plot of its own rather than squashed beside rewards.
std::string plot_group(const std::string& metric) {
  if (metric == "rewards/accuracies") return "accuracy";
  return metric.substr(0, metric.find('/'));
}

// The plots' order: rewards, accuracy, logps, distill, then any other group in order of appearance.
int group_rank(const std::string& group) {
  constexpr const char* order[] = {"rewards", "accuracy", "logps", "distill"};
  for (int rank = 0; rank < 4; rank++)
    if (group == order[rank]) return rank;
  return 4;
}

ImU32 series_color(size_t index) {
  constexpr ImU32 palette[] = {IM_COL32(90, 210, 120, 255), IM_COL32(255, 95, 95, 255),   IM_COL32(255, 200, 60, 255),
                               IM_COL32(64, 170, 255, 255), IM_COL32(200, 130, 255, 255), IM_COL32(120, 230, 230, 255)};
  return palette[index % (sizeof palette / sizeof palette[0])];
}

}  // namespace

bool has_objective_metrics(const train::RunSnapshot& snapshot) {
  return std::any_of(snapshot.steps.begin(), snapshot.steps.end(), [](const auto& s) { return !s.extra.empty(); });
}

std::string method_label(const train::RunInfo& info) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(info.config_json.empty() ? "{}" : info.config_json);
  } catch (const nlohmann::json::exception&) {
    return {};
  }
  if (!config.is_object()) return {};
  auto text = [&](const char* key, const char* otherwise) {
    return config.contains(key) && config[key].is_string() ? config[key].get<std::string>() : std::string(otherwise);
  };
  // run.json files written before --peft-type/--objective existed: LoRA on the SFT loss.
  std::string label = text("method", "lora");
  if (label != "full") label += " / " + text("peft_type", "lora");
  return label + " / " + text("objective", "sft");
}

void draw_objective_panel(const train::RunSnapshot& snapshot, ObjectivePanelState& state) {
  if (!(state.key == snapshot_key(snapshot))) {
    state.series.clear();
    for (const auto& step : snapshot.steps)
      for (const auto& metric : step.extra) {  // a named pair: clang 14 refuses bindings captured in lambdas
        const std::string& name = metric.first;
        auto it =
            std::find_if(state.series.begin(), state.series.end(), [&](const auto& s) { return s.metric == name; });
        if (it == state.series.end())
          it = state.series.insert(state.series.end(), ObjectivePanelState::Series{name, plot_group(name), {}, {}});
        it->x.push_back(static_cast<double>(step.step));
        it->y.push_back(metric.second);
      }
    state.groups.clear();
    for (const auto& series : state.series)
      if (std::find(state.groups.begin(), state.groups.end(), series.group) == state.groups.end())
        state.groups.push_back(series.group);
    // metrics.jsonl objects come back in alphabetical order: show TRL's groups in a fixed order instead.
    std::stable_sort(state.groups.begin(), state.groups.end(),
                     [](const std::string& a, const std::string& b) { return group_rank(a) < group_rank(b); });
    state.key = snapshot_key(snapshot);
  }
  panel_title("Objective");
  for (const auto& series : state.series) {
    ImGui::SameLine();
    ImGui::TextDisabled("%s %.4g", series.metric.c_str(), series.y.back());
  }
  state.plots.resize(state.groups.size());
  const float height = ImGui::GetContentRegionAvail().y / std::max<float>(1, float(state.groups.size())) -
                       ImGui::GetStyle().ItemSpacing.y;
  for (size_t g = 0; g < state.groups.size(); g++) {
    PlotSpec spec;
    spec.id = state.groups[g].c_str();
    spec.x_label = "step";
    spec.y_label = state.groups[g];
    if (state.groups[g] == "accuracy") {
      spec.y_min = 0;
      spec.y_max = 1;
    }
    for (size_t s = 0; s < state.series.size(); s++)
      if (state.series[s].group == state.groups[g])
        spec.series.push_back({state.series[s].metric, state.series[s].x, state.series[s].y, series_color(s)});
    state.plots[g] = draw_plot(spec, ImVec2(-1, std::max(60.0f, height)));
  }
}

ImU32 objective_series_color(size_t index) { return series_color(index); }

}  // namespace vkt::ui
