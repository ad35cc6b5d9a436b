#pragma once
// The dashboard rendered without a display: the same draw_dashboard, drawn by ImGui's Vulkan
// backend into an offscreen image (a render pass on an offscreen framebuffer), read back and
// written as a PNG. Needs a Vulkan device with a graphics queue (lavapipe has one), no window
// system. `vktune dashboard RUN_DIR --png FILE` and `vktune train --plot FILE` use it.
#include <filesystem>

#include "engine/train/monitor.hpp"
#include "ui/dashboard.hpp"
#include "ui/graphics.hpp"

namespace vkt::ui {

// Renders one dashboard frame of `width` x `height` pixels. `state` (optional) carries panel
// settings in (smoothing, axes) and the layout of the frame out (where each plot went).
RgbaImage render_dashboard_image(const train::RunSnapshot& snapshot, int width, int height,
                                 DashboardState* state = nullptr);

// The same, written to `png` atomically (a temporary file renamed into place).
void render_dashboard_png(const train::RunSnapshot& snapshot, const std::filesystem::path& png, int width, int height,
                          DashboardState* state = nullptr);

// Writes RGBA pixels as a PNG, atomically.
void write_png(const std::filesystem::path& png, const RgbaImage& image);

}  // namespace vkt::ui
