// `vktune dashboard RUN_DIR... [--png FILE] [--width W --height H]`: watch a run from its files
// (several runs, a sweep folder or an lr-find folder: app/dashboard_views.cpp).
// Follows RUN_DIR/metrics.jsonl and run.json (a run in progress or a finished one) in the live
// window, or renders the dashboard once into a PNG without any display.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "app/commands.hpp"
#include "app/dashboard_views.hpp"
#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/train/monitor.hpp"
#include "ui/offscreen.hpp"
#include "ui/window.hpp"

namespace vkt::app {

namespace {

struct DashboardArguments {
  std::vector<std::string> run_dirs;
  std::string run_dir;
  std::string png;
  int width = 1280;
  int height = 800;
};

void run_dashboard(const DashboardArguments& arguments) {
  namespace fs = std::filesystem;
  fs::path run_dir = arguments.run_dir;
  const char* hint = "pass the --output-dir of a `vktune train` run: it holds run.json and metrics.jsonl";
  std::error_code error;
  if (!fs::is_directory(run_dir, error))
    throw UserError(run_dir.string() + " is not a directory with a run (run.json, metrics.jsonl)", hint);
  if (!fs::exists(run_dir / "run.json", error) && !fs::exists(run_dir / "metrics.jsonl", error))
    throw UserError(run_dir.string() + " has neither run.json nor metrics.jsonl: no run to show", hint);

  train::RunMonitor monitor;
  train::MetricsFollower follower(run_dir, monitor);
  follower.poll();
  if (!arguments.png.empty()) {
    ui::render_dashboard_png(monitor.snapshot(), arguments.png, arguments.width, arguments.height);
    std::printf("wrote %s (%dx%d, %zu logged steps)\n", arguments.png.c_str(), arguments.width, arguments.height,
                monitor.snapshot().steps.size());
    return;
  }
  if (!ui::display_available())
    throw UserError("no display to open the dashboard window on (DISPLAY and WAYLAND_DISPLAY are unset or unusable)",
                    "render a picture instead: vktune dashboard " + run_dir.string() + " --png dashboard.png");
  ui::WindowOptions options;
  options.title = "vktune dashboard: " + run_dir.string();
  options.width = arguments.width;
  options.height = arguments.height;
  options.read_only = true;  // the controls belong to the `vktune train` process
  auto last_poll = std::chrono::steady_clock::now();
  options.poll = [&] {
    auto now = std::chrono::steady_clock::now();
    if (now - last_poll < std::chrono::milliseconds(500)) return;
    last_poll = now;
    follower.poll();
  };
  ui::run_dashboard_window(monitor, options);
}

}  // namespace

void add_dashboard_command(CLI::App& app) {
  static DashboardArguments arguments;
  auto* command = app.add_subcommand(
      "dashboard", "Watch a training run (live or finished) from its output folder; several runs or a sweep overlaid");
  command
      ->add_option("RUN_DIR", arguments.run_dirs,
                   "The run's --output-dir (run.json, metrics.jsonl); several runs or a `vktune sweep` folder are "
                   "overlaid (loss, eval loss, learning rate) with a run selector; an `lr-find` folder shows its "
                   "curve")
      ->required();
  command->add_option("--png", arguments.png, "Render the dashboard into this PNG and exit (no display needed)");
  command->add_option("--width", arguments.width, "Width in pixels")->capture_default_str();
  command->add_option("--height", arguments.height, "Height in pixels")->capture_default_str();
  command->callback([] {
    std::vector<std::filesystem::path> dirs(arguments.run_dirs.begin(), arguments.run_dirs.end());
    if (dirs.size() > 1 || is_sweep_folder(dirs[0]))
      return show_run_comparison(dirs, arguments.png, arguments.width, arguments.height);
    if (is_lr_find_folder(dirs[0])) return show_lr_find(dirs[0], arguments.png, arguments.width, arguments.height);
    arguments.run_dir = arguments.run_dirs[0];
    run_dashboard(arguments);
  });
}

}  // namespace vkt::app
