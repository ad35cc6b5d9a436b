#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ui/compare_view.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

ImU32 run_color(size_t index) {
  static const ImU32 palette[] = {IM_COL32(255, 140, 26, 255),  IM_COL32(64, 170, 255, 255),
                                  IM_COL32(90, 210, 120, 255),  IM_COL32(240, 80, 110, 255),
                                  IM_COL32(190, 120, 255, 255), IM_COL32(240, 220, 80, 255),
                                  IM_COL32(60, 210, 210, 255),  IM_COL32(255, 150, 200, 255),
                                  IM_COL32(170, 140, 100, 255), IM_COL32(200, 200, 200, 255)};
  return palette[index % std::size(palette)];
}

namespace {

void rebuild(const std::vector<ComparedRun>& runs, ComparePanelState& state) {
  if (state.shown.size() < runs.size()) state.shown.resize(runs.size(), 1);
  const size_t n = runs.size();
  for (auto* series : {&state.step_x, &state.loss_smoothed, &state.eval_x, &state.eval_y, &state.lr_y})
    series->assign(n, {});
  for (size_t r = 0; r < n; r++) {
    std::vector<double> raw;
    for (const auto& step : runs[r].snapshot.steps) {
      state.step_x[r].push_back(double(step.step));
      raw.push_back(step.loss);
      state.lr_y[r].push_back(step.learning_rate);
    }
    state.loss_smoothed[r] = smooth_debiased_ema(raw, state.smoothing);
    for (const auto& eval : runs[r].snapshot.evals) {
      state.eval_x[r].push_back(double(eval.step));
      state.eval_y[r].push_back(eval.eval_loss);
    }
  }
}

PlotFrame overlay(const char* id, const char* y_label, const std::vector<ComparedRun>& runs,
                  const ComparePanelState& state, const std::vector<std::vector<double>>& x,
                  const std::vector<std::vector<double>>& y, SeriesStyle style, float height) {
  PlotSpec spec;
  spec.id = id;
  spec.x_label = "step";
  spec.y_label = y_label;
  spec.format_x = [](double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.0f", value);
    return std::string(text);
  };
  for (size_t r = 0; r < runs.size(); r++) {
    if (!state.shown[r] || x[r].empty()) continue;
    spec.series.push_back({runs[r].label, x[r], y[r], run_color(r), SeriesStyle::line, true});
    if (style == SeriesStyle::points) spec.series.push_back({runs[r].label, x[r], y[r], run_color(r), style, false});
  }
  return draw_plot(spec, ImVec2(0, height));
}

}  // namespace

void draw_compare_window(const std::vector<ComparedRun>& runs, ComparePanelState& state) {
  ImGui::SetNextWindowPos(ImVec2(0, 0));
  ImGui::SetNextWindowSize(ImGui::GetIO().DisplaySize);
  ImGui::Begin("vktune runs", nullptr,
               ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize |
                   ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus);
  rebuild(runs, state);
  const ImVec2 available = ImGui::GetContentRegionAvail();
  const float selector_width = std::clamp(available.x * 0.24f, 220.0f, 380.0f);

  ImGui::BeginChild("run_selector", ImVec2(selector_width, 0), true);
  panel_title("Runs");
  ImGui::SetNextItemWidth(selector_width - 110);
  ImGui::SliderFloat("smoothing", &state.smoothing, 0.0f, 0.999f, "%.3f");
  for (size_t r = 0; r < runs.size(); r++) {
    ImGui::PushID(int(r));
    ImGui::PushStyleColor(ImGuiCol_CheckMark, run_color(r));
    bool shown = state.shown[r] != 0;
    ImGui::Checkbox("##shown", &shown);
    state.shown[r] = shown;
    ImGui::PopStyleColor();
    ImGui::SameLine();
    const auto& snapshot = runs[r].snapshot;
    ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(run_color(r)), "%s", runs[r].label.c_str());
    if (!snapshot.steps.empty())
      ImGui::TextDisabled(
          "    %s, step %lld, loss %.4f%s", train::run_state_name(snapshot.state),
          static_cast<long long>(snapshot.steps.back().step), snapshot.steps.back().loss,
          snapshot.evals.empty() ? "" : (", eval " + std::to_string(snapshot.evals.back().eval_loss)).c_str());
    else
      ImGui::TextDisabled("    %s, no logged step", train::run_state_name(snapshot.state));
    ImGui::PopID();
  }
  ImGui::EndChild();
  ImGui::SameLine();

  ImGui::BeginChild("run_plots", ImVec2(0, 0), false);
  const float spacing = ImGui::GetStyle().ItemSpacing.y;
  const float row = std::floor((std::max(ImGui::GetContentRegionAvail().y, 480.0f) - 5 * spacing) / 3) -
                    ImGui::GetTextLineHeightWithSpacing();
  panel_title("Loss (smoothed)");
  state.loss_plot =
      overlay("compare_loss", "loss", runs, state, state.step_x, state.loss_smoothed, SeriesStyle::line, row);
  panel_title("Eval loss");
  state.eval_plot =
      overlay("compare_eval", "eval loss", runs, state, state.eval_x, state.eval_y, SeriesStyle::points, row);
  panel_title("Learning rate");
  state.learning_rate_plot =
      overlay("compare_lr", "learning rate", runs, state, state.step_x, state.lr_y, SeriesStyle::line, row);
  ImGui::EndChild();
  ImGui::End();
}

}  // namespace vkt::ui
