#pragma once
// `vktune lr-find`'s picture and dashboard panel: loss against log10(learning rate), raw and
// smoothed, the book's range shaded, and the suggestion, the safe value, the divergence point and
// the base's pretraining rate (when known) marked.
#include <vector>

#include "engine/train/lr_find.hpp"
#include "ui/plot.hpp"

namespace vkt::ui {

struct LrFindPanelState {
  PlotFrame plot;  // where the plot went in the last frame
  // x = log10(learning rate) of each step; raw and smoothed loss (n each).
  std::vector<double> log_lr, raw, smoothed;
  std::vector<PlotMarker> markers;  // suggestion, safe, divergence, pretraining (those that exist)
};

// The panel inside the current ImGui window.
void draw_lr_find_panel(const train::LrFindResult& result, LrFindPanelState& state);
// The panel as a whole window at (0, 0) of io.DisplaySize (PNG, `vktune dashboard LR_FIND_DIR`).
void draw_lr_find_window(const train::LrFindResult& result, LrFindPanelState& state);

}  // namespace vkt::ui
