#include "app/dashboard_views.hpp"

#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/lr_find.hpp"
#include "engine/train/monitor.hpp"
#include "ui/compare_view.hpp"
#include "ui/lr_find_view.hpp"
#include "ui/offscreen.hpp"
#include "ui/window.hpp"

namespace vkt::app {

namespace fs = std::filesystem;

bool is_sweep_folder(const fs::path& dir) { return fs::exists(dir / "sweep_state.json"); }
bool is_lr_find_folder(const fs::path& dir) { return fs::exists(dir / "lr_find.json"); }

namespace {

struct FollowedRun {
  std::string label;
  std::unique_ptr<train::RunMonitor> monitor = std::make_unique<train::RunMonitor>();
  std::unique_ptr<train::MetricsFollower> follower;
};

// "trial-003 learning_rate=0.000632 lora_r=4" from the sweep's own record of the trial.
std::string trial_label(const fs::path& sweep, const fs::path& trial) {
  std::string label = trial.filename().string();
  try {
    auto state = nlohmann::json::parse(read_text_file(sweep / "sweep_state.json"));
    for (const auto& t : state.at("trials"))
      if (fs::path(t.at("output").get<std::string>()).filename() == trial.filename())
        for (const auto& [name, value] : t.at("flags").items()) label += " " + name + "=" + value.get<std::string>();
  } catch (const std::exception&) {}
  return label;
}

void add_run(std::deque<FollowedRun>& runs, const fs::path& dir, std::string label) {
  FollowedRun run;
  run.label = std::move(label);
  run.follower = std::make_unique<train::MetricsFollower>(dir, *run.monitor);
  runs.push_back(std::move(run));
}

}  // namespace

void show_run_comparison(const std::vector<fs::path>& dirs, const std::string& png, int width, int height) {
  std::deque<FollowedRun> runs;
  for (const fs::path& dir : dirs) {
    if (!fs::is_directory(dir))
      throw UserError(dir.string() + " is not a directory with a run", "give --output-dir folders of `vktune train`");
    if (is_sweep_folder(dir)) {
      std::vector<fs::path> trials;
      for (const auto& entry : fs::directory_iterator(dir))
        if (entry.is_directory() && entry.path().filename().string().rfind("trial-", 0) == 0 &&
            fs::exists(entry.path() / "metrics.jsonl"))
          trials.push_back(entry.path());
      std::sort(trials.begin(), trials.end());
      if (trials.empty())
        throw UserError(dir.string() + " is a sweep folder without a trial that ran", "run the sweep first");
      for (const auto& trial : trials) add_run(runs, trial, trial_label(dir, trial));
    } else {
      if (!fs::exists(dir / "run.json") && !fs::exists(dir / "metrics.jsonl"))
        throw UserError(dir.string() + " has neither run.json nor metrics.jsonl: no run to show",
                        "pass --output-dir folders of `vktune train`, or a `vktune sweep` folder");
      add_run(runs, dir, dir.filename().string());
    }
  }
  std::vector<ui::ComparedRun> compared(runs.size());
  auto refresh = [&] {
    bool changed = false;
    for (size_t i = 0; i < runs.size(); i++) {
      changed = runs[i].follower->poll() > 0 || changed;
      compared[i] = {runs[i].label, runs[i].monitor->snapshot()};
    }
    return changed;
  };
  refresh();
  ui::ComparePanelState state;
  if (!png.empty()) {
    ui::render_png([&] { ui::draw_compare_window(compared, state); }, png, width, height);
    std::printf("wrote %s (%dx%d, %zu runs)\n", png.c_str(), width, height, compared.size());
    return;
  }
  if (!ui::display_available())
    throw UserError("no display to open the dashboard window on (DISPLAY and WAYLAND_DISPLAY are unset or unusable)",
                    "render a picture instead with --png runs.png");
  train::RunMonitor redraw;  // its version tells the window that a followed run changed
  ui::WindowOptions options;
  options.title = "vktune dashboard: " + std::to_string(runs.size()) + " runs";
  options.width = width;
  options.height = height;
  options.read_only = true;
  options.draw = [&] { ui::draw_compare_window(compared, state); };
  auto last_poll = std::chrono::steady_clock::now();
  options.poll = [&] {
    auto now = std::chrono::steady_clock::now();
    if (now - last_poll < std::chrono::milliseconds(500)) return;
    last_poll = now;
    if (refresh()) redraw.set_progress(0, 0);
  };
  ui::run_dashboard_window(redraw, options);
}

void show_lr_find(const fs::path& dir, const std::string& png, int width, int height) {
  train::LrFindResult result = train::lr_find_from_json(read_text_file(dir / "lr_find.json"));
  ui::LrFindPanelState state;
  if (!png.empty()) {
    ui::render_png([&] { ui::draw_lr_find_window(result, state); }, png, width, height);
    std::printf("wrote %s (%dx%d, lr-find curve of %zu steps)\n", png.c_str(), width, height, result.curve.loss.size());
    return;
  }
  if (!ui::display_available())
    throw UserError("no display to open the dashboard window on", "render a picture instead with --png lr_find.png");
  train::RunMonitor unused;
  ui::WindowOptions options;
  options.title = "vktune lr-find: " + dir.string();
  options.width = width;
  options.height = height;
  options.read_only = true;
  options.draw = [&] { ui::draw_lr_find_window(result, state); };
  ui::run_dashboard_window(unused, options);
}

}  // namespace vkt::app
