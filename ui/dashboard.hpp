#pragma once
// The whole dashboard in one ImGui window covering the display: the run panel and the loss
// curve on top, learning rate and memory in the middle, throughput and kernel times below.
// The live window (ui/window.hpp) and the PNG export (ui/offscreen.hpp) both draw it; so can a
// test with nothing but an ImGui context.
#include "engine/train/monitor.hpp"
#include "ui/panels.hpp"

namespace vkt::ui {

// UI state that lives across frames: each panel's settings (smoothing, axes) and caches, and
// where things were drawn in the last frame.
struct DashboardState {
  LossPanelState loss;
  LearningRatePanelState learning_rate;
  MemoryPanelState memory;
  ThroughputPanelState throughput;
  RunPanelState run;
  ObjectivePanelState objective;  // drawn beside the loss when the run logs objective metrics
};

// Draws one frame of the dashboard into the current ImGui context, between NewFrame and Render,
// as a window at (0, 0) of size io.DisplaySize. controls: the monitor whose pause/save/stop
// requests the run panel's buttons set; nullptr when following files read-only.
void draw_dashboard(const train::RunSnapshot& snapshot, DashboardState& state, train::RunMonitor* controls);

}  // namespace vkt::ui
