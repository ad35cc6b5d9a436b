#include <cmath>
#include <cstdio>

#include "ui/lr_find_view.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

void draw_lr_find_panel(const train::LrFindResult& result, LrFindPanelState& state) {
  const auto& curve = result.curve;
  const auto& s = result.suggestion;
  state.log_lr.clear();
  for (double lr : curve.learning_rate) state.log_lr.push_back(std::log10(lr));
  state.raw = curve.loss;
  state.smoothed = s.smoothed;
  state.markers.clear();
  if (s.steepest)
    state.markers.push_back({std::log10(s.suggested_lr), colors::learning_rate,
                             "suggested " + train::format_learning_rate(s.suggested_lr)});
  if (s.minimum)
    state.markers.push_back(
        {std::log10(s.safe_lr), colors::eval_loss, "safe " + train::format_learning_rate(s.safe_lr)});
  if (s.divergence)
    state.markers.push_back({std::log10(s.divergence_lr), colors::current_step,
                             "diverged " + train::format_learning_rate(s.divergence_lr)});
  if (result.pretraining)
    state.markers.push_back({std::log10(result.pretraining->learning_rate), colors::offloaded,
                             "pretraining " + train::format_learning_rate(result.pretraining->learning_rate)});

  panel_title("Learning-rate range test");
  ImGui::SameLine();
  if (s.steepest)
    ImGui::Text("   suggested %s   safe %s%s", train::format_learning_rate(s.suggested_lr).c_str(),
                train::format_learning_rate(s.safe_lr).c_str(),
                s.divergence ? ("   diverged at " + train::format_learning_rate(s.divergence_lr)).c_str() : "");
  else
    ImGui::TextDisabled("   no descent found");
  for (const auto& warning : s.warnings) ImGui::TextColored(ImVec4(1.0f, 0.75f, 0.3f, 1.0f), "%s", warning.c_str());

  PlotSpec spec;
  spec.id = "lr_find_plot";
  spec.x_label = "log10(learning rate)";
  spec.y_label = "loss";
  spec.format_x = [](double x) { return train::format_learning_rate(std::pow(10.0, x)); };
  spec.series.push_back({"loss (raw)", state.log_lr, state.raw, colors::loss_raw, SeriesStyle::faint_line, true});
  spec.series.push_back({"loss (smoothed)", state.log_lr, state.smoothed, colors::loss, SeriesStyle::line, true});
  spec.shades.push_back(
      {std::log10(train::book_min_lr), std::log10(train::book_max_lr), colors::warmup_shade, "the book's range"});
  spec.markers = state.markers;
  // Past the divergence the loss explodes: keep the y range on the useful part.
  if (s.minimum && s.used > 0) {
    double low = s.smoothed[*s.minimum], high = low;
    for (size_t i = 0; i < s.used; i++)
      if (std::isfinite(curve.loss[i])) {
        low = std::min(low, curve.loss[i]);
        high = std::max(high, curve.loss[i]);
      }
    double pad = 0.05 * std::max(high - low, 1e-6);
    spec.y_min = low - pad;
    spec.y_max = high + pad;
  }
  state.plot = draw_plot(spec, ImVec2(0, 0));
}

void draw_lr_find_window(const train::LrFindResult& result, LrFindPanelState& state) {
  ImGui::SetNextWindowPos(ImVec2(0, 0));
  ImGui::SetNextWindowSize(ImGui::GetIO().DisplaySize);
  ImGui::Begin("vktune lr-find", nullptr,
               ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize |
                   ImGuiWindowFlags_NoSavedSettings);
  draw_lr_find_panel(result, state);
  ImGui::End();
}

}  // namespace vkt::ui
