#pragma once
// Run comparison (`vktune dashboard RUN_DIR RUN_DIR...`, or a sweep folder): the loss, eval loss
// and learning rate of several runs overlaid, one colour per run, with a run selector beside them
// (TensorBoard's: a checkbox per run, its colour, its name).
#include <string>
#include <vector>

#include "engine/train/monitor.hpp"
#include "ui/plot.hpp"

namespace vkt::ui {

struct ComparedRun {
  std::string label;  // the folder name, plus the swept flags for a sweep's trial
  train::RunSnapshot snapshot;
};

struct ComparePanelState {
  float smoothing = 0.6f;   // TensorBoard's default
  std::vector<char> shown;  // (runs) the selector's checkboxes; grows with new runs, shown by default
  PlotFrame loss_plot, eval_plot, learning_rate_plot;  // where the plots went in the last frame
  // Per run, rebuilt every frame (a handful of runs): x = step.
  std::vector<std::vector<double>> step_x, loss_smoothed, eval_x, eval_y, lr_y;
};

// The colour of run `index` (a palette that stays apart on the dark background; cycles after 10).
ImU32 run_color(size_t index);

// The whole comparison as one window at (0, 0) of io.DisplaySize.
void draw_compare_window(const std::vector<ComparedRun>& runs, ComparePanelState& state);

}  // namespace vkt::ui
