#pragma once
// The live dashboard window: GLFW + ImGui's Vulkan backend on the dashboard's own Vulkan device
// (graphics queue), the structure of Dear ImGui's example_glfw_vulkan (swapchain rebuilt on
// VK_ERROR_OUT_OF_DATE_KHR / VK_SUBOPTIMAL_KHR / resize, asleep while minimised) with vsync (FIFO)
// and at most ~30 frames per second. When nothing changes (no input, no new metrics) it draws
// nothing and waits, so it leaves the CPU to the trainer (which matters on lavapipe).
//
// Closing the window while a run it controls is active asks, in a modal, whether to stop
// training: "Stop training" sets stop_requested (the trainer saves a checkpoint and stops) and
// closes the window; "Keep training" closes the window and training goes on headless (the
// caller falls back to the terminal progress line); "Cancel" keeps the window open.
#include <filesystem>
#include <functional>
#include <string>

#include "engine/train/monitor.hpp"
#include "ui/dashboard.hpp"

namespace vkt::ui {

// True when a window can be opened: DISPLAY or WAYLAND_DISPLAY is set, GLFW initialises and
// finds Vulkan's surface extensions.
bool display_available();

struct WindowOptions {
  std::string title = "vktune dashboard";
  int width = 1280, height = 800;
  // Following files (`vktune dashboard RUN_DIR`): the run panel's controls are disabled and
  // closing never asks.
  bool read_only = false;
  double max_frames_per_second = 30;
  // Called on every pass of the event loop (at least every ~0.25 s), before drawing; e.g. a
  // MetricsFollower::poll() throttled by the caller.
  std::function<void()> poll;
  // Close by itself when the run reaches finished / stopped / failed.
  bool close_when_run_ends = false;
  // For tests and automation:
  int max_frames = 0;                           // return after this many drawn frames (0: until closed)
  std::function<void(int frame)> before_frame;  // called before each drawn frame (0-based)
  std::filesystem::path screenshot_png;         // the last drawn frame, read back from the swapchain image
  DashboardState* state = nullptr;              // panel settings and layout, kept by the caller
  // Draws each frame instead of the dashboard (run comparison, lr-find); set read_only with it.
  std::function<void()> draw;
};

enum class WindowResult {
  closed,          // the user closed it (a read-only window, an ended run, or "Keep training")
  stop_requested,  // the user chose "Stop training" when closing
  run_ended,       // close_when_run_ends and the run ended
  frame_limit,     // max_frames drawn
};
const char* window_result_name(WindowResult result);

// Opens the window and runs its event loop on the calling thread (GLFW wants the main thread)
// until it closes. The trainer runs on another thread and publishes into `monitor`; the
// window reads a new snapshot only when monitor.version() changes. UserError when no window
// can be opened (check display_available() first to fall back to headless).
WindowResult run_dashboard_window(train::RunMonitor& monitor, const WindowOptions& options = {});

// Closes the open dashboard window as if the user had closed it (it asks first when it controls
// an active run). Call on the window's thread, e.g. from WindowOptions::before_frame.
void request_window_close();

}  // namespace vkt::ui
