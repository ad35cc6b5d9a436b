// The throughput panel: tokens per second and seconds per optimizer step over the steps, and
// the kernels that take the most GPU time per step (from the trainer's timestamp queries).
#include <imgui.h>
#include <algorithm>
#include <cstdio>

#include "engine/base/files.hpp"
#include "ui/panels.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

namespace {

void draw_kernel_table(const train::RunSnapshot& snapshot, size_t rows) {
  double total = 0;
  for (const auto& kernel : snapshot.kernels) total += kernel.milliseconds;
  if (snapshot.kernels.empty()) {
    ImGui::TextDisabled("no kernel timings yet");
    return;
  }
  ImGui::Text("GPU time %.2f ms/step, %zu kernels", total, snapshot.kernels.size());
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_BordersInnerV |
                                ImGuiTableFlags_SizingStretchProp;
  if (!ImGui::BeginTable("kernels", 3, flags, ImVec2(0, 0))) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("kernel", ImGuiTableColumnFlags_WidthStretch, 2.2f);
  ImGui::TableSetupColumn("ms/step", ImGuiTableColumnFlags_WidthStretch, 0.9f);
  ImGui::TableSetupColumn("share", ImGuiTableColumnFlags_WidthStretch, 1.1f);
  ImGui::TableHeadersRow();
  // The trainer sends them sorted by time; sort anyway, a table of unsorted "top" kernels misleads.
  std::vector<const train::KernelTime*> sorted;
  for (const auto& kernel : snapshot.kernels) sorted.push_back(&kernel);
  std::stable_sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->milliseconds > b->milliseconds; });
  for (size_t i = 0; i < std::min(rows, sorted.size()); i++) {
    const auto& kernel = *sorted[i];
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(kernel.name.c_str());
    ImGui::TableNextColumn();
    ImGui::Text("%.3f", kernel.milliseconds);
    ImGui::TableNextColumn();
    double share = total > 0 ? kernel.milliseconds / total : 0;
    ImVec2 p = ImGui::GetCursorScreenPos();
    float width = ImGui::GetContentRegionAvail().x, height = ImGui::GetTextLineHeight();
    ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(p.x, p.y + 2),
                                              ImVec2(p.x + width * static_cast<float>(share), p.y + height - 1),
                                              IM_COL32(190, 120, 255, 110));
    ImGui::Text("%.1f%%", 100 * share);
  }
  ImGui::EndTable();
}

}  // namespace

void draw_throughput_panel(const train::RunSnapshot& snapshot, ThroughputPanelState& state) {
  if (!(state.key == snapshot_key(snapshot))) {
    state.steps.clear();
    state.tokens_per_second.clear();
    state.step_seconds.clear();
    for (const auto& step : snapshot.steps) {
      state.steps.push_back(static_cast<double>(step.step));
      state.tokens_per_second.push_back(step.tokens_per_second);
      state.step_seconds.push_back(step.step_seconds);
    }
    state.key = snapshot_key(snapshot);
  }
  panel_title("Throughput");
  if (!snapshot.steps.empty()) {
    const auto& last = snapshot.steps.back();
    ImGui::SameLine();
    ImGui::TextDisabled("%.0f tokens/s, %.3f s/step, %s tokens trained", last.tokens_per_second, last.step_seconds,
                        format_tick(static_cast<double>(last.tokens), 1).c_str());
    if (last.rank_step_seconds.size() > 1 && last.step_seconds > 0) {  // data parallel (mpirun)
      ImGui::SameLine();
      ImGui::TextDisabled("| %zu ranks, all-reduce not hidden by the backward %.0f%% of the step, slowest rank %.3f s",
                          last.rank_step_seconds.size(), 100.0 * last.all_reduce_seconds / last.step_seconds,
                          *std::max_element(last.rank_step_seconds.begin(), last.rank_step_seconds.end()));
    }
  }
  ImVec2 available = ImGui::GetContentRegionAvail();
  auto format_step = [](double x) { return std::to_string(static_cast<long long>(x)); };

  PlotSpec tokens;
  tokens.id = "tokens_per_second_plot";
  tokens.x_label = "step";
  tokens.y_label = "tokens/s";
  tokens.format_x = format_step;
  tokens.legend = false;
  tokens.y_min = 0;  // throughput reads honestly from zero
  tokens.series.push_back(
      {"tokens/s", state.steps, state.tokens_per_second, colors::tokens_per_second, SeriesStyle::line, true});
  state.tokens_plot = draw_plot(tokens, ImVec2(available.x * 0.34f, available.y));
  ImGui::SameLine();

  PlotSpec seconds;
  seconds.id = "step_time_plot";
  seconds.x_label = "step";
  seconds.y_label = "seconds per step";
  seconds.format_x = format_step;
  seconds.format_y = [](double s) { return format_duration(s); };
  seconds.legend = false;
  seconds.y_min = 0;
  seconds.series.push_back({"step time", state.steps, state.step_seconds, colors::step_time, SeriesStyle::line, true});
  state.step_time_plot = draw_plot(seconds, ImVec2(available.x * 0.30f, available.y));
  ImGui::SameLine();

  ImGui::BeginChild("kernel_times", ImVec2(0, available.y), false);
  draw_kernel_table(snapshot, state.kernel_rows);
  ImGui::EndChild();
}

}  // namespace vkt::ui
