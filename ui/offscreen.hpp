#pragma once
// The dashboard rendered without a display: the same draw_dashboard, drawn by ImGui's Vulkan
// backend into an offscreen image (a render pass on an offscreen framebuffer), read back and
// written as a PNG. Needs a Vulkan device with a graphics queue (lavapipe has one), no window
// system. `vktune dashboard RUN_DIR --png FILE` and `vktune train --plot FILE` use it.
#include <filesystem>
#include <functional>
#include <memory>

#include "engine/train/monitor.hpp"
#include "ui/dashboard.hpp"
#include "ui/graphics.hpp"

namespace vkt::ui {

// ImGui's current context is process-global, not per thread: render on the thread that runs the
// window (or while none is open), not on the trainer's thread while a window is open.

// Keeps the Vulkan device, the offscreen image and an ImGui context between renders: creating them
// costs ~1 s on lavapipe (driver and pipeline setup), a render after that tens of milliseconds.
// For a PNG written periodically during a headless run.
class OffscreenRenderer {
 public:
  OffscreenRenderer(int width, int height);  // UserError outside 320x240 .. 8192x8192
  ~OffscreenRenderer();
  OffscreenRenderer(const OffscreenRenderer&) = delete;
  OffscreenRenderer& operator=(const OffscreenRenderer&) = delete;
  // One dashboard frame; `state` as below.
  RgbaImage render(const train::RunSnapshot& snapshot, DashboardState* state = nullptr);
  // Any other frame: `draw` issues the ImGui calls (run comparison, lr-find).
  RgbaImage render(const std::function<void()>& draw);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Renders one dashboard frame of `width` x `height` pixels. `state` (optional) carries panel
// settings in (smoothing, axes) and the layout of the frame out (where each plot went).
RgbaImage render_dashboard_image(const train::RunSnapshot& snapshot, int width, int height,
                                 DashboardState* state = nullptr);

// The same, written to `png` atomically (a temporary file renamed into place).
void render_dashboard_png(const train::RunSnapshot& snapshot, const std::filesystem::path& png, int width, int height,
                          DashboardState* state = nullptr);

// One frame drawn by `draw`, written to `png` (the run comparison's and lr-find's pictures).
void render_png(const std::function<void()>& draw, const std::filesystem::path& png, int width, int height);

// Writes RGBA pixels as a PNG, atomically.
void write_png(const std::filesystem::path& png, const RgbaImage& image);

}  // namespace vkt::ui
