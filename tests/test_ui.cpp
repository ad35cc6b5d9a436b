// The dashboard: plot math (ticks, smoothing, decimation), every panel drawn in a headless ImGui
// frame from recorded metrics, the offscreen PNG export checked pixel by pixel against the data,
// the live window under Xvfb, the metrics follower, and `vktune dashboard`.
#include <doctest/doctest.h>
#include <imgui.h>
#include <stb_image.h>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/config.hpp"
#include "engine/train/lr_find.hpp"
#include "engine/train/monitor.hpp"
#include "engine/train/schedule.hpp"
#include "tests/support.hpp"
#include "ui/compare_view.hpp"
#include "ui/dashboard.hpp"
#include "ui/graphics.hpp"
#include "ui/lr_find_view.hpp"
#include "ui/offscreen.hpp"
#include "ui/plot.hpp"
#include "ui/style.hpp"
#include "ui/window.hpp"

using namespace vkt;
using test::ScopedEnv;

namespace {

constexpr uint64_t MiB = 1ull << 20;

// A QLoRA run of 1000 cosine steps with 50 warmup steps, as run.json would record it.
train::RunInfo synthetic_info(int64_t max_steps = 1000) {
  train::TrainConfig config;
  config.model = "models/Llama-3.2-1B";
  config.data = "data/alpaca-cleaned.jsonl";
  config.output_dir = "runs/llama-1b-qlora";
  config.method = spec::Method::qlora;
  config.quant = kernels::WeightFormat::nf4;
  config.learning_rate = 2e-4;
  config.lr_scheduler_type = train::ScheduleType::cosine;
  config.warmup_steps = 50;
  config.max_steps = max_steps;
  config.lora_r = 16;
  config.target_modules = "q_proj,k_proj,v_proj,o_proj";
  train::RunInfo info;
  info.config_json = train::to_json(config);
  info.device =
      "device 0: llvmpipe (LLVM 15.0.6, 256 bits) | Mesa cpu | Mesa 22.3.6 | Vulkan 1.3.230 | fp16 yes | "
      "int8 yes | storage8/16 yes/yes | subgroup 8 | shared 32 KiB";
  info.max_steps = max_steps;
  info.schedule_type = "cosine";
  info.peak_learning_rate = 2e-4;
  info.warmup_steps = 50;
  using C = vk::Category;
  auto plan = [&](C c, uint64_t bytes) { info.planned_bytes[static_cast<size_t>(c)] = bytes; };
  plan(C::base_weights, 520 * MiB);  // embeddings and norms stay unquantized
  plan(C::quantized_weights, 610 * MiB);
  plan(C::adapter_params, 22 * MiB);
  plan(C::gradients, 22 * MiB);
  plan(C::optimizer_state, 44 * MiB);
  plan(C::activations, 1400 * MiB);
  plan(C::workspace, 380 * MiB);
  plan(C::staging, 64 * MiB);
  info.device_budget_bytes = 4096 * MiB;
  info.started_at = "2026-11-23T16:42:00Z";
  return info;
}

double synthetic_loss(int64_t step) {
  // A decaying curve with deterministic "noise" so that raw and smoothed differ.
  double hash = std::sin(static_cast<double>(step) * 12.9898) * 43758.5453;
  double uniform = hash - std::floor(hash);  // deterministic noise in [0, 1)
  return 1.1 + 1.9 * std::exp(-static_cast<double>(step) / 160.0) + 0.25 * (uniform - 0.5);
}

train::StepMetrics synthetic_step(const train::RunInfo& info, int64_t step) {
  train::Schedule schedule(ui::schedule_settings(info));
  train::StepMetrics m;
  m.step = step;
  m.epoch = static_cast<double>(step) / 400.0;
  m.loss = synthetic_loss(step);
  m.learning_rate = schedule.learning_rate(step);
  m.grad_norm = 0.8 + 0.3 * std::cos(static_cast<double>(step) * 0.3);
  m.tokens_per_second = 2100 + 150 * std::sin(static_cast<double>(step) / 25.0);
  m.step_seconds = 4096.0 / m.tokens_per_second;
  m.tokens = step * 4096;
  m.elapsed_seconds = static_cast<double>(step) * 2.0;
  for (size_t c = 0; c < vk::category_count; c++)
    m.memory_bytes[c] = info.planned_bytes[c] + info.planned_bytes[c] / 25;
  return m;
}

// A monitor as the trainer would leave it after `steps` steps, logging every `logging_steps`,
// evaluating every 100.
void fill_monitor(train::RunMonitor& monitor, int64_t steps, int64_t logging_steps = 1, int64_t max_steps = 1000) {
  train::RunInfo info = synthetic_info(max_steps);
  monitor.set_info(info);
  monitor.set_state(train::RunState::running);
  for (int64_t step = logging_steps; step <= steps; step += logging_steps) {
    monitor.push_step(synthetic_step(info, step));
    if (step % 100 == 0) monitor.push_eval({step, step / 400.0, synthetic_loss(step) + 0.15, step * 2.0});
  }
  monitor.set_kernels({{"matmul_nf4_f16", 41.2},
                       {"attention_forward", 17.5},
                       {"attention_backward", 22.9},
                       {"matmul_backward_nf4", 38.4},
                       {"rmsnorm_forward", 2.1},
                       {"cross_entropy_fused", 9.8},
                       {"rope_forward", 1.4},
                       {"swiglu_forward", 3.3},
                       {"adamw_step", 0.9},
                       {"lora_backward", 6.2},
                       {"embedding_backward", 0.5}});
  monitor.set_progress(steps, static_cast<double>(steps) * 2.0);
}

train::RunSnapshot synthetic_snapshot(int64_t steps, int64_t logging_steps = 1) {
  train::RunMonitor monitor;
  fill_monitor(monitor, steps, logging_steps);
  return monitor.snapshot();
}

// An ImGui context with no backend: frames are built and rendered to draw lists only.
struct HeadlessImGui {
  ImGuiContext* previous = ImGui::GetCurrentContext();
  ImGuiContext* context = ImGui::CreateContext();
  HeadlessImGui(float width = 1280, float height = 800) {
    ImGui::SetCurrentContext(context);
    ui::setup_imgui_context();
    ImGuiIO& io = ImGui::GetIO();
    io.DisplaySize = ImVec2(width, height);
    io.DeltaTime = 1.0f / 60;
    io.BackendFlags |= ImGuiBackendFlags_RendererHasVtxOffset;  // as the Vulkan backend declares
    unsigned char* pixels = nullptr;
    int atlas_width = 0, atlas_height = 0;
    io.Fonts->GetTexDataAsRGBA32(&pixels, &atlas_width, &atlas_height);
  }
  ~HeadlessImGui() {
    ImGui::DestroyContext(context);
    ImGui::SetCurrentContext(previous);
  }
  ImDrawData* frame(const std::function<void()>& draw) {
    ImGui::NewFrame();
    draw();
    ImGui::Render();
    return ImGui::GetDrawData();
  }
};

// Vertices of colour `color` inside `frame`'s data area, over all draw lists.
size_t vertices_inside(ImDrawData* data, const ui::PlotFrame& frame, ImU32 color) {
  size_t count = 0;
  for (int l = 0; l < data->CmdListsCount; l++)
    for (const ImDrawVert& v : data->CmdLists[l]->VtxBuffer)
      if (v.col == color && frame.contains(v.pos)) count++;
  return count;
}

// True when a pixel within `radius` of (x, y) is close to `color` (per channel within `tolerance`).
bool has_color_near(const ui::RgbaImage& image, ImVec2 at, ImU32 color, int radius = 3, int tolerance = 40) {
  ImVec4 c = ImGui::ColorConvertU32ToFloat4(color);
  int want[3] = {int(c.x * 255 + 0.5f), int(c.y * 255 + 0.5f), int(c.z * 255 + 0.5f)};
  for (int y = int(at.y) - radius; y <= int(at.y) + radius; y++)
    for (int x = int(at.x) - radius; x <= int(at.x) + radius; x++) {
      if (x < 0 || y < 0 || x >= image.width || y >= image.height) continue;
      const uint8_t* p = image.at(x, y);
      if (std::abs(p[0] - want[0]) <= tolerance && std::abs(p[1] - want[1]) <= tolerance &&
          std::abs(p[2] - want[2]) <= tolerance)
        return true;
    }
  return false;
}

ui::RgbaImage read_png(const std::filesystem::path& path) {
  int width = 0, height = 0, channels = 0;
  unsigned char* data = stbi_load(path.string().c_str(), &width, &height, &channels, 4);
  REQUIRE_MESSAGE(data != nullptr, "cannot read " << path);
  ui::RgbaImage image;
  image.width = width;
  image.height = height;
  image.pixels.assign(data, data + static_cast<size_t>(width) * height * 4);
  stbi_image_free(data);
  return image;
}


// Xvfb on a display number it picks itself (-displayfd writes it once the server is ready), for
// as long as the object lives.
class Xvfb {
 public:
  static bool installed() {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    for (size_t start = 0; start <= dirs.size();) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      if (access((dirs.substr(start, end - start) + "/Xvfb").c_str(), X_OK) == 0) return true;
      start = end + 1;
    }
    return false;
  }
  // Empty when the server did not come up within 10 s.
  std::string start(const std::filesystem::path& log_file) {
    int fds[2];
    if (pipe(fds) != 0) return {};
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[0]);
      FILE* log = std::fopen(log_file.string().c_str(), "w");
      if (log) {
        dup2(fileno(log), 1);
        dup2(fileno(log), 2);
      }
      std::string fd = std::to_string(fds[1]);
      // -noreset: without it the server resets when the last client leaves, and a window opened
      // right then (the next one in this test) fails to connect.
      execlp("Xvfb", "Xvfb", "-displayfd", fd.c_str(), "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-noreset",
             nullptr);
      _exit(127);
    }
    close(fds[1]);
    std::string number;
    struct pollfd wait_for {
      fds[0], POLLIN, 0
    };
    while (poll(&wait_for, 1, 10000) > 0) {
      char c;
      if (read(fds[0], &c, 1) != 1 || c == '\n') break;
      number += c;
    }
    close(fds[0]);
    return number.empty() ? std::string() : ":" + number;
  }
  ~Xvfb() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }

 private:
  pid_t pid_ = -1;
};

// Writes run.json and metrics.jsonl as the trainer does.
void write_run_dir(const std::filesystem::path& dir, int64_t steps) {
  train::RunInfo info = synthetic_info(1000);
  write_file_atomically(dir / "run.json", train::run_info_to_json(info, train::RunState::running));
  std::string lines;
  for (int64_t step = 1; step <= steps; step++) {
    lines += train::step_to_json_line(synthetic_step(info, step)) + "\n";
    if (step % 100 == 0)
      lines += train::eval_to_json_line({step, step / 400.0, synthetic_loss(step) + 0.15, step * 2.0}) + "\n";
  }
  write_file_atomically(dir / "metrics.jsonl", lines);
}

}  // namespace

TEST_SUITE("ui") {

// ---- plot math --------------------------------------------------------------------------------

TEST_CASE("plot: ticks are 1-2-5 multiples that cover the range") {
  auto is_one_two_five = [](double step) {
    double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    return std::fabs(mantissa - 1) < 1e-9 || std::fabs(mantissa - 2) < 1e-9 || std::fabs(mantissa - 5) < 1e-9;
  };
  struct Case {
    double low, high;
    int target;
    double step;
  };
  // Steps worked out by hand: range / target, rounded to the nearest 1-2-5 value.
  for (Case c : {Case{0, 1, 5, 0.2}, Case{0.13, 0.97, 4, 0.2}, Case{0, 1000, 5, 200}, Case{1, 1000, 10, 100},
                 Case{-3, 7, 5, 2}, Case{0.0001, 0.00021, 5, 2e-5}, Case{1.7, 3.1, 6, 0.2}, Case{0, 73000, 6, 10000}}) {
    CAPTURE(c.low);
    CAPTURE(c.high);
    ui::Ticks ticks = ui::nice_ticks(c.low, c.high, c.target);
    CHECK(ticks.step == doctest::Approx(c.step));
    CHECK(is_one_two_five(ticks.step));
    REQUIRE(!ticks.values.empty());
    CHECK(ticks.values.front() >= c.low - 1e-12);
    CHECK(ticks.values.front() - ticks.step < c.low);  // no tick missing at the low end
    CHECK(ticks.values.back() <= c.high + 1e-12);
    CHECK(ticks.values.back() + ticks.step > c.high);
    for (double v : ticks.values) CHECK(std::fabs(v / ticks.step - std::round(v / ticks.step)) < 1e-9);
  }
  ui::Ticks zero = ui::nice_ticks(-1, 1, 4);
  CHECK(std::count(zero.values.begin(), zero.values.end(), 0.0) == 1);  // exactly 0, not 1e-17
  CHECK(!ui::nice_ticks(5, 5, 4).values.empty());                       // a constant still gets ticks
  CHECK(ui::nice_ticks(NAN, 1, 4).values.empty());

  // Log axis: decades, with 2 and 5 between when there is room.
  std::vector<double> few = ui::log_ticks(0.9, 110, 10);
  CHECK(few == std::vector<double>{1, 2, 5, 10, 20, 50, 100});
  std::vector<double> many = ui::log_ticks(1e-8, 1e2, 5);
  for (double v : many) CHECK(std::fabs(std::log10(v) - std::round(std::log10(v))) < 1e-9);
  CHECK(many.size() <= 6);
  CHECK(many.size() >= 3);

  CHECK(ui::format_tick(0, 0.2) == "0");
  CHECK(ui::format_tick(0.4, 0.2) == "0.4");
  CHECK(ui::format_tick(1.25, 0.05) == "1.25");
  CHECK(ui::format_tick(20000, 10000) == "20k");
  CHECK(ui::format_tick(1500000, 500000) == "1.5M");
  CHECK(ui::format_tick(2e-4, 1e-4) == "2e-4");
  CHECK(ui::format_tick(1.5e-5, 5e-6) == "1.5e-5");
}

TEST_CASE("plot: debiased EMA matches a hand computation and TensorBoard's rules") {
  // weight 0.6 over {1, 2, 4}:
  //   ema1 = 0.4*1 = 0.4,             debias 1-0.6   = 0.4   -> 1
  //   ema2 = 0.6*0.4 + 0.4*2 = 1.04,  debias 1-0.36  = 0.64  -> 1.625
  //   ema3 = 0.6*1.04 + 0.4*4 = 2.224, debias 1-0.216 = 0.784 -> 2.836734693877551
  std::vector<double> values = {1, 2, 4};
  auto smoothed = ui::smooth_debiased_ema(values, 0.6);
  REQUIRE(smoothed.size() == 3);
  CHECK(smoothed[0] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(smoothed[1] == doctest::Approx(1.625).epsilon(1e-12));
  CHECK(smoothed[2] == doctest::Approx(2.224 / 0.784).epsilon(1e-12));
  // Weight 0 is the identity; a constant series stays exact; NaN passes through and is skipped.
  CHECK(ui::smooth_debiased_ema(values, 0.0) == values);
  std::vector<double> constant(5, 0.1);
  CHECK(ui::smooth_debiased_ema(constant, 0.9) == constant);
  std::vector<double> gap = {1, NAN, 2};
  auto with_gap = ui::smooth_debiased_ema(gap, 0.6);
  CHECK(std::isnan(with_gap[1]));
  CHECK(with_gap[2] == doctest::Approx(1.625).epsilon(1e-12));  // as if the NaN were not there
  // The first value is never pulled towards zero (that is what the debiasing is for).
  std::vector<double> big = {100, 100.5, 99.5};
  CHECK(ui::smooth_debiased_ema(big, 0.99)[0] == doctest::Approx(100));
}

TEST_CASE("plot: min/max decimation keeps every column's extremes and the end points") {
  const size_t n = 100000;
  std::vector<double> x(n), y(n);
  std::mt19937 random(7);
  std::normal_distribution<double> noise(0, 1);
  for (size_t i = 0; i < n; i++) {
    x[i] = static_cast<double>(i + 1);
    y[i] = std::sin(x[i] / 5000.0) + 0.1 * noise(random);
  }
  y[31337] = 50;  // a spike that must survive
  y[77777] = -50;
  const int columns = 800;
  auto kept = ui::decimate_min_max(x, y, x.front(), x.back(), columns);
  CHECK(kept.size() <= 4 * columns);
  CHECK(kept.size() >= 2 * columns);  // ~125 points per column: first/min/max/last mostly distinct
  CHECK(std::is_sorted(kept.begin(), kept.end()));
  CHECK(std::adjacent_find(kept.begin(), kept.end()) == kept.end());
  CHECK(kept.front() == 0);
  CHECK(kept.back() == n - 1);
  CHECK(std::find(kept.begin(), kept.end(), 31337) != kept.end());
  CHECK(std::find(kept.begin(), kept.end(), 77777) != kept.end());
  // Per column: the kept points include that column's true min and max.
  double width = x.back() - x.front();
  std::vector<double> column_min(columns, INFINITY), column_max(columns, -INFINITY), kept_min = column_min,
                                                                                     kept_max = column_max;
  auto column = [&](size_t i) { return std::min(columns - 1, int((x[i] - x.front()) / width * columns)); };
  for (size_t i = 0; i < n; i++) {
    column_min[column(i)] = std::min(column_min[column(i)], y[i]);
    column_max[column(i)] = std::max(column_max[column(i)], y[i]);
  }
  for (size_t i : kept) {
    kept_min[column(i)] = std::min(kept_min[column(i)], y[i]);
    kept_max[column(i)] = std::max(kept_max[column(i)], y[i]);
  }
  CHECK(kept_min == column_min);
  CHECK(kept_max == column_max);
  // Fewer points than columns: all kept. Points outside the range: one on each side.
  std::vector<double> small_x = {0, 1, 2, 3, 4, 5, 6}, small_y = {5, 4, 3, 2, 1, 0, -1};
  auto all = ui::decimate_min_max(small_x, small_y, 0, 6, 100);
  CHECK(all.size() == 7);
  auto inside = ui::decimate_min_max(small_x, small_y, 2, 4, 100);
  CHECK(inside == std::vector<size_t>{1, 2, 3, 4, 5});
  std::vector<double> with_nan = {1, NAN, 3, 4, 5, 6, 7};
  CHECK(ui::decimate_min_max(small_x, with_nan, 0, 6, 100).size() == 6);

  CHECK(ui::nearest_index(small_x, 2.4) == 2);
  CHECK(ui::nearest_index(small_x, 2.6) == 3);
  CHECK(ui::nearest_index(small_x, -5) == 0);
  CHECK(ui::nearest_index(small_x, 99) == 6);
}

TEST_CASE("plot: frame maps data to pixels, linear and log") {
  ui::PlotFrame frame;
  frame.area_min = ImVec2(100, 50);
  frame.area_max = ImVec2(500, 250);
  frame.x_min = 0;
  frame.x_max = 100;
  frame.y_min = 1;
  frame.y_max = 3;
  CHECK(frame.to_pixel_x(0) == doctest::Approx(100));
  CHECK(frame.to_pixel_x(25) == doctest::Approx(200));
  CHECK(frame.to_pixel_y(1) == doctest::Approx(250));  // y grows upwards
  CHECK(frame.to_pixel_y(2) == doctest::Approx(150));
  CHECK(frame.from_pixel_x(300) == doctest::Approx(50));
  frame.log_y = true;
  frame.y_min = 1e-3;
  frame.y_max = 1e1;
  CHECK(frame.to_pixel_y(1e-1) == doctest::Approx(150));  // the middle decade boundary
}

// ---- learning rate and run helpers ------------------------------------------------------------

TEST_CASE("panels: the planned schedule from run.json fields equals train::Schedule") {
  train::RunInfo info = synthetic_info(1000);
  info.schedule_type = "cosine_with_restarts";
  info.schedule_kwargs = R"({"num_cycles": 3})";
  train::ScheduleSettings settings = ui::schedule_settings(info);
  CHECK(settings.type == train::ScheduleType::cosine_with_restarts);
  CHECK(settings.num_cycles == 3);
  CHECK(settings.warmup_steps == 50);
  info.schedule_type = "warmup_stable_decay";
  info.schedule_kwargs = R"({"num_decay_steps": 200, "decay_type": "1-sqrt", "min_lr_ratio": 0.1})";
  settings = ui::schedule_settings(info);
  CHECK(settings.num_decay_steps == 200);
  CHECK(settings.decay_type == "1-sqrt");
  CHECK(settings.min_lr_ratio == 0.1);
  info.schedule_kwargs = R"({"num_cycles": "two"})";
  CHECK_THROWS_AS(ui::schedule_settings(info), UserError);
  info.schedule_kwargs = "[1]";
  CHECK_THROWS_AS(ui::schedule_settings(info), UserError);
  info.schedule_kwargs = "{}";
  info.schedule_type = "exotic";
  CHECK_THROWS_AS(ui::schedule_settings(info), UserError);

  // Sample steps: every step when few, else a stride that keeps warmup corners and the end.
  auto all = ui::schedule_sample_steps(1000, 50);
  CHECK(all.size() == 1000);
  CHECK(all.front() == 1);
  CHECK(all.back() == 1000);
  auto strided = ui::schedule_sample_steps(1000003, 777, 1000);
  CHECK(strided.size() <= 1004);
  CHECK(std::is_sorted(strided.begin(), strided.end()));
  CHECK(std::find(strided.begin(), strided.end(), 777) != strided.end());
  CHECK(std::find(strided.begin(), strided.end(), 778) != strided.end());
  CHECK(strided.back() == 1000003);
  CHECK(ui::schedule_sample_steps(0, 0).empty());
}

TEST_CASE("panels: ETA from the recent pace, tokens at eval steps") {
  train::RunSnapshot snapshot;
  snapshot.info.max_steps = 100;
  CHECK(std::isnan(ui::estimate_remaining_seconds(snapshot)));
  // 2 s/step early on, 1 s/step for the last ten logged steps: the estimate follows the recent pace.
  double elapsed = 0;
  for (int step = 1; step <= 40; step++) {
    elapsed += step <= 20 ? 2.0 : 1.0;
    train::StepMetrics m;
    m.step = step;
    m.elapsed_seconds = elapsed;
    m.tokens = step * 100;
    snapshot.steps.push_back(m);
  }
  snapshot.current_step = 40;
  snapshot.current_elapsed = elapsed;
  CHECK(ui::estimate_remaining_seconds(snapshot) == doctest::Approx(60.0));
  snapshot.current_step = 100;
  CHECK(ui::estimate_remaining_seconds(snapshot) == 0);
  CHECK(ui::tokens_at_step(snapshot.steps, 10) == doctest::Approx(1000));
  CHECK(ui::tokens_at_step(snapshot.steps, 10.5) == doctest::Approx(1050));
  CHECK(ui::tokens_at_step(snapshot.steps, 80) == doctest::Approx(8000));  // extrapolated at 100 tokens/step
  CHECK(ui::run_is_active(train::RunState::paused));
  CHECK(!ui::run_is_active(train::RunState::finished));
}

// ---- headless ImGui frames --------------------------------------------------------------------

TEST_CASE("dashboard: every panel draws from recorded metrics in a headless frame") {
  train::RunSnapshot snapshot = synthetic_snapshot(600);
  HeadlessImGui imgui;
  ui::DashboardState state;
  auto panel_frame = [&](const char* name, const std::function<void()>& draw) {
    ImDrawData* data = imgui.frame([&] {
      ImGui::SetNextWindowPos(ImVec2(0, 0));
      ImGui::SetNextWindowSize(ImVec2(900, 400));
      ImGui::Begin(name);
      draw();
      ImGui::End();
    });
    CAPTURE(name);
    CHECK(data->TotalVtxCount > 100);
    return data;
  };
  ImDrawData* data = panel_frame("loss", [&] { ui::draw_loss_panel(snapshot, state.loss); });
  REQUIRE(state.loss.plot.drawn);
  // The smoothed curve is drawn in its colour inside the plot area; the raw curve too.
  CHECK(vertices_inside(data, state.loss.plot, ui::colors::loss) > 100);
  CHECK(vertices_inside(data, state.loss.plot, ui::colors::loss_raw) > 100);
  CHECK(state.loss.plot.x_min <= 1);
  CHECK(state.loss.plot.x_max >= 600);
  CHECK(state.loss.plot.y_min < *std::min_element(state.loss.raw.begin(), state.loss.raw.end()));
  CHECK(state.loss.plot.y_max > *std::max_element(state.loss.raw.begin(), state.loss.raw.end()));
  CHECK(state.loss.eval_x.size() == 6);

  data = panel_frame("learning rate", [&] { ui::draw_learning_rate_panel(snapshot, state.learning_rate); });
  REQUIRE(state.learning_rate.plot.drawn);
  CHECK(state.learning_rate.error.empty());
  CHECK(state.learning_rate.planned_x.size() == 1000);  // the whole schedule, ahead of the run
  CHECK(state.learning_rate.plot.x_max == 1000);
  CHECK(vertices_inside(data, state.learning_rate.plot, ui::colors::learning_rate) > 100);
  CHECK(vertices_inside(data, state.learning_rate.plot, ui::colors::current_step) >= 2);
  // The planned curve peaks at the end of warmup and sits at the peak rate there.
  size_t peak = std::max_element(state.learning_rate.planned_y.begin(), state.learning_rate.planned_y.end()) -
                state.learning_rate.planned_y.begin();
  CHECK(state.learning_rate.planned_x[peak] == 51);
  CHECK(state.learning_rate.planned_y[peak] == doctest::Approx(2e-4));

  data = panel_frame("memory", [&] { ui::draw_memory_panel(snapshot, state.memory); });
  CHECK(state.memory.bytes_per_pixel > 0);
  CHECK(state.memory.budget_x > state.memory.bar_origin_x);
  // The budget line sits at 4096 MiB on the bar scale.
  CHECK((state.memory.budget_x - state.memory.bar_origin_x) * state.memory.bytes_per_pixel ==
        doctest::Approx(4096.0 * MiB).epsilon(0.01));
  size_t category_vertices = 0;
  for (int l = 0; l < data->CmdListsCount; l++)
    for (const ImDrawVert& v : data->CmdLists[l]->VtxBuffer)
      if (v.col == ui::colors::category(vk::Category::activations)) category_vertices++;
  CHECK(category_vertices >= 8);  // two bar segments and a table swatch

  data = panel_frame("throughput", [&] { ui::draw_throughput_panel(snapshot, state.throughput); });
  CHECK(state.throughput.tokens_plot.drawn);
  CHECK(state.throughput.step_time_plot.drawn);
  CHECK(vertices_inside(data, state.throughput.tokens_plot, ui::colors::tokens_per_second) > 50);

  train::RunMonitor controls;
  data = panel_frame("run", [&] { ui::draw_run_panel(snapshot, state.run, &controls); });
  data = panel_frame("run read-only", [&] { ui::draw_run_panel(snapshot, state.run, nullptr); });

  // The whole dashboard, and an empty run (nothing logged yet) that must not trip anything.
  data = imgui.frame([&] { ui::draw_dashboard(snapshot, state, &controls); });
  CHECK(data->CmdListsCount >= 6);  // the window and its five panels
  CHECK(state.loss.plot.contains(state.loss.plot.to_pixel(300, synthetic_loss(300))));
  train::RunSnapshot empty;
  ui::DashboardState empty_state;
  data = imgui.frame([&] { ui::draw_dashboard(empty, empty_state, nullptr); });
  CHECK(data->TotalVtxCount > 0);
  CHECK(!empty_state.loss.plot.drawn);
  CHECK(!empty_state.learning_rate.error.empty());  // max_steps unknown: said, not drawn
}

TEST_CASE("dashboard: the hover readout and the toggles") {
  train::RunSnapshot snapshot = synthetic_snapshot(300);
  HeadlessImGui imgui;
  ui::DashboardState state;
  imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  // Hover over the middle of the loss plot: a tooltip window opens.
  ImVec2 middle((state.loss.plot.area_min.x + state.loss.plot.area_max.x) / 2,
                (state.loss.plot.area_min.y + state.loss.plot.area_max.y) / 2);
  ImGui::GetIO().MousePos = middle;
  imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  CHECK(state.loss.plot.hovered);
  CHECK(state.loss.plot.hover_x == doctest::Approx(150).epsilon(0.02));
  bool tooltip = false;
  ImDrawData* data = ImGui::GetDrawData();
  for (int l = 0; l < data->CmdListsCount; l++)
    if (std::string(data->CmdLists[l]->_OwnerName ? data->CmdLists[l]->_OwnerName : "").find("Tooltip") !=
        std::string::npos)
      tooltip = true;
  CHECK(tooltip);

  // Tokens on x: the same curve spans the token counts; log y keeps it inside.
  state.loss.x_is_tokens = true;
  state.loss.log_y = true;
  ImGui::GetIO().MousePos = ImVec2(-FLT_MAX, -FLT_MAX);
  imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  CHECK(state.loss.plot.x_max >= 300 * 4096);
  CHECK(state.loss.plot.log_y);
  CHECK(state.loss.eval_x.front() == doctest::Approx(100 * 4096));
  // Smoothing 0: the smoothed curve is the raw one.
  state.loss.smoothing = 0;
  imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  CHECK(state.loss.smoothed == state.loss.raw);
}

TEST_CASE("dashboard: the learning-rate panel draws every schedule type ahead of the run") {
  HeadlessImGui imgui;
  for (const std::string& type : train::schedule_names()) {
    CAPTURE(type);
    train::RunMonitor monitor;
    fill_monitor(monitor, 0);
    train::RunInfo info = synthetic_info(300);
    info.schedule_type = type;
    info.warmup_steps = 30;
    if (type == "polynomial") info.schedule_kwargs = R"({"lr_end": 1e-6, "power": 2})";
    if (type == "warmup_stable_decay") info.schedule_kwargs = R"({"num_decay_steps": 60})";
    monitor.set_info(info);
    monitor.set_progress(120, 240);
    train::RunSnapshot snapshot = monitor.snapshot();
    ui::LearningRatePanelState state;
    ImDrawData* data = imgui.frame([&] {
      ImGui::SetNextWindowPos(ImVec2(0, 0));
      ImGui::SetNextWindowSize(ImVec2(700, 300));
      ImGui::Begin("lr");
      ui::draw_learning_rate_panel(snapshot, state);
      ImGui::End();
    });
    CHECK(state.error.empty());
    REQUIRE(state.planned_x.size() == 300);
    REQUIRE(state.plot.drawn);
    // The curve is train::Schedule's, step by step, drawn before any step was logged.
    train::Schedule schedule(ui::schedule_settings(info));
    for (size_t i : {size_t{0}, size_t{29}, size_t{30}, size_t{150}, size_t{299}})
      CHECK(state.planned_y[i] == doctest::Approx(schedule.learning_rate(static_cast<long long>(i) + 1)));
    CHECK(vertices_inside(data, state.plot, ui::colors::learning_rate) > 20);
    CHECK(vertices_inside(data, state.plot, ui::colors::current_step) >= 2);
    CHECK(vertices_inside(data, state.plot, ui::colors::warmup_shade) >= 4);
  }
}

TEST_CASE("dashboard: the run panel's buttons set the monitor's requests") {
  train::RunMonitor monitor;
  fill_monitor(monitor, 50);
  train::RunSnapshot snapshot = monitor.snapshot();
  HeadlessImGui imgui;
  ui::DashboardState state;
  auto frame = [&] { imgui.frame([&] { ui::draw_dashboard(snapshot, state, &monitor); }); };
  // A click: press over the button in one frame, release in the next (ImGui acts on release).
  auto click = [&](const ImVec2& at) {
    ImGuiIO& io = ImGui::GetIO();
    io.MousePos = at;
    io.MouseDown[0] = true;
    frame();
    io.MouseDown[0] = false;
    frame();
    io.MousePos = ImVec2(-FLT_MAX, -FLT_MAX);
    frame();
  };
  frame();
  click(state.run.pause_button);
  CHECK(monitor.pause_requested.load());
  click(state.run.pause_button);  // now "Resume"
  CHECK(!monitor.pause_requested.load());
  click(state.run.save_button);
  CHECK(monitor.save_requested.load());
  click(state.run.stop_button);  // asks first
  CHECK(!monitor.stop_requested.load());
  CHECK(state.run.stop_confirm_open);
  click(state.run.stop_confirm_button);
  CHECK(monitor.stop_requested.load());
  // Read-only (following files): the buttons are disabled, a click on Stop opens nothing.
  ui::DashboardState read_only;
  imgui.frame([&] { ui::draw_dashboard(snapshot, read_only, nullptr); });
  ImGuiIO& io = ImGui::GetIO();
  io.MousePos = read_only.run.stop_button;
  io.MouseDown[0] = true;
  imgui.frame([&] { ui::draw_dashboard(snapshot, read_only, nullptr); });
  io.MouseDown[0] = false;
  imgui.frame([&] { ui::draw_dashboard(snapshot, read_only, nullptr); });
  CHECK(!read_only.run.stop_confirm_open);
  CHECK(!ImGui::IsPopupOpen("", ImGuiPopupFlags_AnyPopupId));
}

TEST_CASE("dashboard: 100k logged steps draw a bounded number of vertices") {
  train::RunInfo info = synthetic_info(100000);
  train::RunSnapshot snapshot;
  snapshot.info = info;
  for (int64_t step = 1; step <= 100000; step++) {
    train::StepMetrics m;
    m.step = step;
    m.loss = synthetic_loss(step);
    m.learning_rate = 1e-4;
    m.tokens = step * 1000;
    snapshot.steps.push_back(m);
  }
  snapshot.current_step = 100000;
  snapshot.version = 1;
  HeadlessImGui imgui;
  ui::DashboardState state;
  ImDrawData* data = imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  REQUIRE(state.loss.plot.drawn);
  float width = state.loss.plot.area_max.x - state.loss.plot.area_min.x;
  size_t smoothed = vertices_inside(data, state.loss.plot, ui::colors::loss);
  CHECK(smoothed > 0);
  // At most 4 points per pixel column, each a few vertices in an anti-aliased polyline.
  CHECK(smoothed < static_cast<size_t>(width * 4 * 8));
  CHECK(data->TotalVtxCount < 400000);
}

// ---- offscreen PNG ----------------------------------------------------------------------------

TEST_CASE("offscreen: the PNG shows the loss curve where the data says") {
  uint32_t errors_before = ui::validation_errors();
  train::RunSnapshot snapshot = synthetic_snapshot(600);
  auto dir = test::temp_dir("ui_offscreen");
  auto png = dir / "dashboard.png";
  ui::DashboardState state;
  ui::render_dashboard_png(snapshot, png, 1280, 800, &state);
  REQUIRE(std::filesystem::exists(png));
  for (const auto& entry : std::filesystem::directory_iterator(dir))  // no temporary left behind
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
  ui::RgbaImage image = read_png(png);
  CHECK(image.width == 1280);
  CHECK(image.height == 800);
  REQUIRE(state.loss.plot.drawn);
  const auto& plot = state.loss.plot;
  // The smoothed curve's first and last points and a middle one, mapped with the layout the frame used.
  for (size_t i : {size_t{0}, size_t{299}, state.loss.x.size() - 1}) {
    ImVec2 at = plot.to_pixel(state.loss.x[i], state.loss.smoothed[i]);
    CAPTURE(i);
    CAPTURE(at.x);
    CAPTURE(at.y);
    CHECK(has_color_near(image, at, ui::colors::loss));
  }
  // Eval points in their colour.
  ImVec2 eval = plot.to_pixel(state.loss.eval_x[2], state.loss.eval_y[2]);
  CHECK(has_color_near(image, eval, ui::colors::eval_loss));
  // Far above the late part of the curve (loss ~1.2 at step 450; below the legend) nothing is orange.
  ImVec2 empty_area = plot.to_pixel(450, 2.4);
  CHECK(plot.to_pixel_y(*std::max_element(state.loss.raw.begin() + 400, state.loss.raw.end())) > empty_area.y + 30);
  CHECK(!has_color_near(image, empty_area, ui::colors::loss, 4));
  CHECK(!has_color_near(image, empty_area, ui::colors::loss_raw | IM_COL32(0, 0, 0, 255), 4, 20));
  // The learning-rate panel's planned curve is drawn too, at its peak.
  const auto& lr = state.learning_rate;
  CHECK(has_color_near(image, lr.plot.to_pixel(51, 2e-4), ui::colors::learning_rate));
  CHECK(ui::validation_errors() == errors_before);
}


TEST_CASE("offscreen: a kept renderer draws each new snapshot") {
  uint32_t errors_before = ui::validation_errors();
  ImGuiContext* before = ImGui::GetCurrentContext();
  ui::OffscreenRenderer renderer(800, 600);
  CHECK(ImGui::GetCurrentContext() == before);  // the renderer's context is current only inside it
  ui::DashboardState state;
  for (int64_t steps : {100, 400}) {
    CAPTURE(steps);
    ui::RgbaImage image = renderer.render(synthetic_snapshot(steps), &state);
    CHECK(image.width == 800);
    CHECK(image.height == 600);
    REQUIRE(state.loss.x.size() == static_cast<size_t>(steps));
    CHECK(state.loss.plot.x_max >= steps);
    CHECK(state.loss.plot.x_max < steps * 1.05);
    ImVec2 last = state.loss.plot.to_pixel(state.loss.x.back(), state.loss.smoothed.back());
    CHECK(has_color_near(image, last, ui::colors::loss));
  }
  CHECK(ImGui::GetCurrentContext() == before);
  CHECK_THROWS_AS(ui::OffscreenRenderer(100, 100), UserError);
  CHECK(ui::validation_errors() == errors_before);
}

TEST_CASE("offscreen: the dashboard's validation counter counts errors") {
  // Proves that ui::validation_errors() can fail the checks above: an invalid fence flag is
  // reported by the layer of the dashboard's own instance.
  if (!std::getenv("VKT_VALIDATION")) {
    MESSAGE("VKT_VALIDATION is not set: the dashboard's validation counter is not exercised");
    return;
  }
  ui::GraphicsContext graphics;
  graphics.create_device();
  REQUIRE(graphics.validation_enabled());
  uint32_t before = ui::validation_errors();
  VkFenceCreateInfo info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  info.flags = 0x40;
  VkFence fence = VK_NULL_HANDLE;
  vkCreateFence(graphics.device(), &info, nullptr, &fence);
  if (fence) vkDestroyFence(graphics.device(), fence, nullptr);
  CHECK(ui::validation_errors() > before);
}

// ---- the live window --------------------------------------------------------------------------

TEST_CASE("window: live frames under Xvfb follow new steps, and closing asks") {
  if (!Xvfb::installed()) {
    MESSAGE("Xvfb is not installed: the window test is skipped (apt-get install xvfb)");
    return;
  }
  auto dir = test::temp_dir("ui_window");
  Xvfb server;
  std::string display = server.start(dir / "xvfb.log");
  REQUIRE_MESSAGE(!display.empty(), "Xvfb did not start; see " << (dir / "xvfb.log"));
  ScopedEnv set_display("DISPLAY", display.c_str());
  ScopedEnv no_wayland("WAYLAND_DISPLAY", nullptr);
  CHECK(ui::display_available());
  uint32_t errors_before = ui::validation_errors();

  // A run at step 200 that gains 20 logged steps before every frame.
  train::RunMonitor monitor;
  fill_monitor(monitor, 200);
  train::RunInfo info = synthetic_info(1000);
  int64_t step = 200;
  ui::DashboardState state;
  ui::WindowOptions options;
  options.max_frames = 6;
  options.screenshot_png = dir / "window.png";
  options.state = &state;
  options.before_frame = [&](int) {
    for (int k = 0; k < 20; k++) monitor.push_step(synthetic_step(info, ++step));
    monitor.set_progress(step, step * 2.0);
  };
  CHECK(ui::run_dashboard_window(monitor, options) == ui::WindowResult::frame_limit);
  CHECK(step == 320);
  CHECK(!monitor.stop_requested.load());
  ui::RgbaImage image = read_png(options.screenshot_png);
  CHECK(image.width == 1280);
  CHECK(image.height == 800);
  // The last frame drew all 320 steps: its first, middle and last smoothed points are on screen
  // where the layout puts them.
  REQUIRE(state.loss.x.size() == 320);
  const auto& plot = state.loss.plot;
  for (size_t i : {size_t{0}, size_t{160}, size_t{319}}) {
    CAPTURE(i);
    CHECK(has_color_near(image, plot.to_pixel(state.loss.x[i], state.loss.smoothed[i]), ui::colors::loss));
  }
  CHECK(!has_color_near(image, plot.to_pixel(300, 2.6), ui::colors::loss, 4));
  // The current-step marker of the learning-rate panel moved to step 320.
  CHECK(has_color_near(image,
                       ImVec2(state.learning_rate.plot.to_pixel_x(320),
                              (state.learning_rate.plot.area_min.y + state.learning_rate.plot.area_max.y) / 2),
                       ui::colors::current_step, 2));

  // Closing while the run is active asks instead of closing; a read-only window just closes.
  bool modal_seen = false;
  options = {};
  options.max_frames = 6;
  options.before_frame = [&](int frame) {
    if (frame == 2) ui::request_window_close();
    if (frame == 5) modal_seen = ImGui::IsPopupOpen("", ImGuiPopupFlags_AnyPopupId);
  };
  CHECK(ui::run_dashboard_window(monitor, options) == ui::WindowResult::frame_limit);
  CHECK(modal_seen);
  CHECK(!monitor.stop_requested.load());
  options.read_only = true;
  options.max_frames = 100;
  options.before_frame = [&](int frame) {
    if (frame == 2) ui::request_window_close();
  };
  CHECK(ui::run_dashboard_window(monitor, options) == ui::WindowResult::closed);
  // A run that has ended: the window closes by itself when asked to.
  monitor.set_state(train::RunState::finished);
  options = {};
  options.close_when_run_ends = true;
  options.max_frames = 100;
  CHECK(ui::run_dashboard_window(monitor, options) == ui::WindowResult::run_ended);
  CHECK(ui::validation_errors() == errors_before);
}

TEST_CASE("window: no display is reported, not crashed on") {
  ScopedEnv no_display("DISPLAY", nullptr);
  ScopedEnv no_wayland("WAYLAND_DISPLAY", nullptr);
  CHECK(!ui::display_available());
}

// ---- following files --------------------------------------------------------------------------

TEST_CASE("follower: sees lines appended while it runs, including a line completed later") {
  auto dir = test::temp_dir("ui_follower");
  train::RunInfo info = synthetic_info(1000);
  train::RunMonitor monitor;
  train::MetricsFollower follower(dir, monitor);
  CHECK(follower.poll() == 0);  // nothing there yet
  write_file_atomically(dir / "run.json", train::run_info_to_json(info, train::RunState::running));
  std::ofstream out(dir / "metrics.jsonl", std::ios::binary);
  out << train::step_to_json_line(synthetic_step(info, 1)) << "\n"
      << train::step_to_json_line(synthetic_step(info, 2)) << "\n";
  out.flush();
  CHECK(follower.poll() == 2);
  CHECK(monitor.snapshot().info.max_steps == 1000);
  CHECK(monitor.snapshot().state == train::RunState::running);
  // A complete line and half of the next one: only the complete one is applied...
  std::string third = train::step_to_json_line(synthetic_step(info, 3));
  std::string eval = train::eval_to_json_line({3, 0.01, 2.5, 6.0});
  out << third << "\n" << eval.substr(0, eval.size() / 2);
  out.flush();
  CHECK(follower.poll() == 1);
  CHECK(follower.poll() == 0);
  CHECK(monitor.snapshot().evals.empty());
  // ... and the rest of it once written.
  out << eval.substr(eval.size() / 2) << "\n";
  out.flush();
  CHECK(follower.poll() == 1);
  train::RunSnapshot snapshot = monitor.snapshot();
  REQUIRE(snapshot.steps.size() == 3);
  CHECK(snapshot.steps[2].step == 3);
  CHECK(snapshot.steps[2].loss == doctest::Approx(synthetic_loss(3)));
  CHECK(snapshot.steps[1].memory_bytes == synthetic_step(info, 2).memory_bytes);
  REQUIRE(snapshot.evals.size() == 1);
  CHECK(snapshot.evals[0].eval_loss == 2.5);
  // run.json rewritten when the run finishes: the state follows.
  write_file_atomically(dir / "run.json", train::run_info_to_json(info, train::RunState::finished));
  std::filesystem::last_write_time(dir / "run.json",
                                   std::filesystem::file_time_type::clock::now() + std::chrono::seconds(2));
  follower.poll();
  CHECK(monitor.snapshot().state == train::RunState::finished);
}

// ---- the command ------------------------------------------------------------------------------

TEST_CASE("vktune dashboard: --png renders a run directory, a wrong directory is a clear error") {
  auto dir = test::temp_dir("ui_command");
  auto run_dir = dir / "run";
  std::filesystem::create_directories(run_dir);
  write_run_dir(run_dir, 400);
  std::string vktune = (test::binary_dir() / "vktune").string();
  auto png = dir / "dashboard.png";
  ScopedEnv no_display("DISPLAY", nullptr);  // --png needs no display
  auto [status, output_text] = test::run_command(vktune + " dashboard " + run_dir.string() + " --png " + png.string() +
                                                 " --width 1000 --height 700");
  const auto& output = output_text;  // not a structured binding: clang 14 cannot capture one
  INFO(output);
  CHECK(status == 0);
  ui::RgbaImage image = read_png(png);
  CHECK(image.width == 1000);
  CHECK(image.height == 700);
  CHECK(output.find("vulkan validation") == std::string::npos);  // the child inherits VKT_VALIDATION

  auto [missing_status, missing_output] =
      test::run_command(vktune + " dashboard " + (dir / "nothing-here").string() + " --png " + png.string());
  CHECK(missing_status == 1);
  CHECK(missing_output.find("run.json") != std::string::npos);
  CHECK(missing_output.find("HINT") != std::string::npos);
  auto [window_status, window_output] = test::run_command(vktune + " dashboard " + run_dir.string());
  CHECK(window_status == 1);  // no display and no --png: says so
  CHECK(window_output.find("--png") != std::string::npos);
}


// ---- run comparison and lr-find ----------------------------------------------------------------

namespace {

// Three runs whose losses lie 1.0 apart (run r: 3 + r - step/100), learning rates 1e-4 x (r+1),
// an eval every 50 steps.
std::vector<ui::ComparedRun> compared_runs() {
  std::vector<ui::ComparedRun> runs;
  for (int r = 0; r < 3; r++) {
    train::RunMonitor monitor;
    monitor.set_info(synthetic_info(200));
    for (int64_t step = 1; step <= 200; step++) {
      train::StepMetrics m;
      m.step = step;
      m.loss = 3.0 + r - double(step) / 100;
      m.learning_rate = 1e-4 * (r + 1);
      monitor.push_step(m);
      if (step % 50 == 0) monitor.push_eval({step, 0, m.loss + 0.1, 0});
    }
    monitor.set_state(train::RunState::finished);
    runs.push_back({"run-" + std::to_string(r), monitor.snapshot()});
  }
  return runs;
}

train::LrFindResult synthetic_lr_find() {
  train::LrFindResult result;
  for (int i = 0; i < 80; i++) {
    double lr = 1e-7 * std::pow(1e7, i / 79.0), x = std::log10(lr);
    double loss = 10 - 4 / (1 + std::exp(-3 * (x + 4)));
    if (x > -1.5) loss *= std::exp(4 * (x + 1.5));
    result.curve.learning_rate.push_back(lr);
    result.curve.loss.push_back(loss);
  }
  result.suggestion = train::suggest_learning_rate(result.curve, result.settings);
  return result;
}

}  // namespace

TEST_CASE("compare: several runs overlaid, one colour each; the selector hides a run") {
  HeadlessImGui imgui;
  auto runs = compared_runs();
  ui::ComparePanelState state;
  ImDrawData* data = imgui.frame([&] { ui::draw_compare_window(runs, state); });
  REQUIRE(state.loss_plot.drawn);
  REQUIRE(state.eval_plot.drawn);
  REQUIRE(state.learning_rate_plot.drawn);
  for (size_t r = 0; r < runs.size(); r++) {
    CAPTURE(r);
    CHECK(vertices_inside(data, state.loss_plot, ui::run_color(r)) > 20);
    CHECK(vertices_inside(data, state.eval_plot, ui::run_color(r)) > 8);  // 4 points and their line
    CHECK(vertices_inside(data, state.learning_rate_plot, ui::run_color(r)) > 2);
  }
  // All three fit: the loss axis spans run 0's lowest (1.0) to run 2's highest (~5).
  CHECK(state.loss_plot.y_min <= 1.0 + 1e-9);
  CHECK(state.loss_plot.y_max >= 4.9);
  CHECK(state.learning_rate_plot.y_max >= 3e-4);
  state.shown[1] = 0;  // unticked in the selector
  data = imgui.frame([&] { ui::draw_compare_window(runs, state); });
  CHECK(vertices_inside(data, state.loss_plot, ui::run_color(1)) == 0);
  CHECK(vertices_inside(data, state.loss_plot, ui::run_color(0)) > 20);
  CHECK(vertices_inside(data, state.loss_plot, ui::run_color(2)) > 20);
}

TEST_CASE("compare: the PNG shows each run's curve where its data says") {
  uint32_t errors_before = ui::validation_errors();
  auto runs = compared_runs();
  auto png = test::temp_dir("ui_compare") / "runs.png";
  ui::ComparePanelState state;
  ui::render_png([&] { ui::draw_compare_window(runs, state); }, png, 1280, 800);
  ui::RgbaImage image = read_png(png);
  REQUIRE(state.loss_plot.drawn);
  for (size_t r = 0; r < runs.size(); r++) {
    CAPTURE(r);
    // Step 100 (away from the legend): each run's own smoothed value, in its own colour.
    ImVec2 at = state.loss_plot.to_pixel(100, state.loss_smoothed[r][99]);
    CHECK(has_color_near(image, at, ui::run_color(r)));
    // Its eval point at step 150.
    CHECK(has_color_near(image, state.eval_plot.to_pixel(150, state.eval_y[r][2]), ui::run_color(r)));
  }
  // Between run 0 and run 1 (0.5 above run 0 at step 100) there is no curve.
  ImVec2 between = state.loss_plot.to_pixel(100, state.loss_smoothed[0][99] + 0.5);
  for (size_t r = 0; r < runs.size(); r++) CHECK_FALSE(has_color_near(image, between, ui::run_color(r), 3));
  CHECK(ui::validation_errors() == errors_before);
}

TEST_CASE("lr-find panel: the curve with the suggestion, the safe value and the divergence marked") {
  HeadlessImGui imgui;
  train::LrFindResult result = synthetic_lr_find();
  REQUIRE(result.suggestion.steepest);
  REQUIRE(result.suggestion.divergence);
  ui::LrFindPanelState state;
  ImDrawData* data = imgui.frame([&] { ui::draw_lr_find_window(result, state); });
  REQUIRE(state.plot.drawn);
  REQUIRE(state.markers.size() == 3);
  CHECK(state.markers[0].x == doctest::Approx(std::log10(result.suggestion.suggested_lr)));
  CHECK(state.markers[2].x == doctest::Approx(std::log10(result.suggestion.divergence_lr)));
  CHECK(vertices_inside(data, state.plot, ui::colors::loss) > 20);           // the smoothed curve
  CHECK(vertices_inside(data, state.plot, ui::colors::learning_rate) >= 2);  // the suggestion's line
  CHECK(vertices_inside(data, state.plot, ui::colors::current_step) >= 2);   // the divergence's
  // x runs over log10(lr): -7 .. 0.
  CHECK(state.plot.x_min <= -7 + 1e-9);
  CHECK(state.plot.x_max >= -1e-9);
}

TEST_CASE("compare: the live window draws the overlay instead of the dashboard") {
  if (!Xvfb::installed()) {
    MESSAGE("Xvfb is not installed: the window test is skipped (apt-get install xvfb)");
    return;
  }
  auto dir = test::temp_dir("ui_compare_window");
  Xvfb server;
  std::string display = server.start(dir / "xvfb.log");
  REQUIRE_MESSAGE(!display.empty(), "Xvfb did not start; see " << (dir / "xvfb.log"));
  ScopedEnv set_display("DISPLAY", display.c_str());
  ScopedEnv no_wayland("WAYLAND_DISPLAY", nullptr);
  auto runs = compared_runs();
  ui::ComparePanelState state;
  train::RunMonitor redraw;
  ui::WindowOptions options;
  options.max_frames = 3;
  options.read_only = true;
  options.screenshot_png = dir / "window.png";
  options.draw = [&] { ui::draw_compare_window(runs, state); };
  options.before_frame = [&](int frame) { redraw.set_progress(frame, 0); };
  CHECK(ui::run_dashboard_window(redraw, options) == ui::WindowResult::frame_limit);
  ui::RgbaImage image = read_png(options.screenshot_png);
  REQUIRE(state.loss_plot.drawn);
  for (size_t r = 0; r < runs.size(); r++)
    CHECK(has_color_near(image, state.loss_plot.to_pixel(100, state.loss_smoothed[r][99]), ui::run_color(r)));
}

TEST_CASE("vktune dashboard: several runs, a sweep folder and an lr-find folder") {
  auto dir = test::temp_dir("ui_command_views");
  for (const char* name : {"a", "b", "sweep/trial-001", "sweep/trial-002"}) {
    std::filesystem::create_directories(dir / name);
    write_run_dir(dir / name, 100);
  }
  write_file_atomically(dir / "sweep" / "sweep_state.json",
                        R"({"trials": [{"index": 1, "flags": {"lora_r": "4"}, "output": "x/trial-001"}]})");
  std::filesystem::create_directories(dir / "lr");
  write_file_atomically(dir / "lr" / "lr_find.json", train::lr_find_json(synthetic_lr_find()));
  std::string vktune = (test::binary_dir() / "vktune").string() + " dashboard ";
  ScopedEnv no_display("DISPLAY", nullptr);
  auto png = (dir / "out.png").string();
  auto [runs_status, runs_output] =
      test::run_command(vktune + (dir / "a").string() + " " + (dir / "b").string() + " --png " + png);
  CHECK(runs_status == 0);
  CHECK(runs_output.find("2 runs") != std::string::npos);
  auto [sweep_status, sweep_output] =
      test::run_command(vktune + (dir / "sweep").string() + " " + (dir / "a").string() + " --png " + png);
  CHECK(sweep_status == 0);
  CHECK(sweep_output.find("3 runs") != std::string::npos);  // the sweep's two trials and run a
  auto [lr_status, lr_output] = test::run_command(vktune + (dir / "lr").string() + " --png " + png);
  CHECK(lr_status == 0);
  CHECK(lr_output.find("lr-find curve of 80 steps") != std::string::npos);
  CHECK(read_png(png).width == 1280);
}

TEST_CASE("dashboard: the loss panel marks the best evaluation (lowest, or highest with greater_is_better)") {
  train::RunSnapshot snapshot = synthetic_snapshot(600);
  snapshot.evals.clear();
  const double eval_losses[] = {2.0, 1.5, 1.2, 1.4, 1.6, 1.7};  // overfitting after step 300
  for (int i = 0; i < 6; i++) snapshot.evals.push_back({100 * (i + 1), 0, eval_losses[i], 0});
  HeadlessImGui imgui;
  ui::DashboardState state;
  ImDrawData* data = imgui.frame([&] {
    ImGui::SetNextWindowPos(ImVec2(0, 0));
    ImGui::SetNextWindowSize(ImVec2(900, 400));
    ImGui::Begin("loss");
    ui::draw_loss_panel(snapshot, state.loss);
    ImGui::End();
  });
  CHECK(state.loss.best_x == 300);
  CHECK(state.loss.best_y == 1.2);
  CHECK(vertices_inside(data, state.loss.plot, ui::colors::best_step) >= 2);  // the marker line
  // A metric where higher is better: the marker moves to the highest value.
  snapshot.info.config_json = R"({"greater_is_better": true})";
  snapshot.version++;
  imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  CHECK(state.loss.best_x == 100);
  // No evaluations: no marker.
  snapshot.evals.clear();
  snapshot.version++;
  data = imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  CHECK(std::isnan(state.loss.best_x));
  CHECK(vertices_inside(data, state.loss.plot, ui::colors::best_step) == 0);
}


namespace {

// A run directory's files as `vktune train` writes them: run.json from `info`, and metrics.jsonl with
// `lines` (each a JSON object), read back through the follower's parser as `vktune dashboard` does.
// legacy: run.json without the fields added for the method rows (trainable_parameters, memory_parts).
train::RunSnapshot replayed(const train::RunInfo& info, const std::vector<std::string>& lines, bool legacy = false) {
  train::RunMonitor monitor;
  train::RunState state = train::RunState::running;
  nlohmann::json run_json = nlohmann::json::parse(train::run_info_to_json(info, train::RunState::finished));
  if (legacy) {
    REQUIRE(run_json.erase("trainable_parameters") == 1);
    REQUIRE(run_json.erase("memory_parts") == 1);
  }
  monitor.set_info(train::run_info_from_json(run_json.dump(), &state));
  monitor.set_state(state);
  for (const std::string& line : lines) REQUIRE(train::apply_metrics_line(monitor, line));
  return monitor.snapshot();
}

std::string objective_line(int64_t step, const std::vector<std::pair<std::string, double>>& extra) {
  train::StepMetrics m;
  m.step = step;
  m.loss = 0.69 - 0.01 * static_cast<double>(step);
  m.extra = extra;
  return train::step_to_json_line(m);
}

}  // namespace

TEST_CASE("dashboard: the method, its trainable kinds, memory parts, and preference and distillation curves") {
  train::RunInfo info = synthetic_info(40);
  train::TrainConfig config;
  config.method = spec::Method::qlora;
  config.peft_type = spec::PeftType::dora;
  config.objective = "dpo";
  info.config_json = train::to_json(config);
  info.trainable_parameters = {{"LoRA A", 400000}, {"LoRA B", 800000}, {"DoRA magnitudes", 20000}};
  info.memory_parts = {{"LoRA A", 3200000, 3200000}, {"DoRA magnitudes", 160000, 160000}, {"teacher", 90 * MiB, 0}};
  std::vector<std::string> lines;
  for (int64_t step = 1; step <= 40; step++) {
    const double s = static_cast<double>(step);
    lines.push_back(objective_line(step, {{"rewards/chosen", 0.02 * s},
                                          {"rewards/rejected", -0.03 * s},
                                          {"rewards/margins", 0.05 * s},
                                          {"rewards/accuracies", std::min(1.0, 0.5 + 0.02 * s)},
                                          {"logps/chosen", -40 + 0.1 * s},
                                          {"logps/rejected", -42 - 0.2 * s}}));
  }
  train::RunSnapshot snapshot = replayed(info, lines);
  // run.json and metrics.jsonl round trip: the kinds, the parts and every TRL metric of every step.
  REQUIRE(snapshot.info.trainable_parameters.size() == 3);
  CHECK(snapshot.info.trainable_parameters[2].first == "DoRA magnitudes");
  CHECK(snapshot.info.trainable_parameters[2].second == 20000);
  REQUIRE(snapshot.info.memory_parts.size() == 3);
  CHECK(snapshot.info.memory_parts[2].planned == 90 * MiB);
  REQUIRE(snapshot.steps.size() == 40);
  CHECK(snapshot.steps.back().extra.size() == 6);
  CHECK(ui::has_objective_metrics(snapshot));

  HeadlessImGui imgui;
  ui::DashboardState state;
  ImDrawData* data = imgui.frame([&] { ui::draw_dashboard(snapshot, state, nullptr); });
  CHECK(state.run.method == "qlora / dora / dpo");
  // The memory table: the ledger's categories with a value, then the parts, the teacher among them.
  const auto& rows = state.memory.table_rows;
  CHECK(std::find(rows.begin(), rows.end(), "quantized_weights") != rows.end());
  CHECK(std::find(rows.begin(), rows.end(), "DoRA magnitudes") != rows.end());
  CHECK(std::find(rows.begin(), rows.end(), "teacher") != rows.end());
  // One plot per group: rewards (chosen, rejected, margins), accuracy, logps; each series drawn inside its plot.
  const auto& objective = state.objective;
  REQUIRE(objective.groups == std::vector<std::string>{"rewards", "accuracy", "logps"});
  REQUIRE(objective.plots.size() == 3);
  for (size_t s = 0; s < objective.series.size(); s++) {
    const size_t group = std::find(objective.groups.begin(), objective.groups.end(), objective.series[s].group) -
                         objective.groups.begin();
    CAPTURE(objective.series[s].metric);
    REQUIRE(objective.plots[group].drawn);
    CHECK(vertices_inside(data, objective.plots[group], ui::objective_series_color(s)) >= 4);
  }
  CHECK(objective.plots[1].y_min == 0);  // accuracies on a fixed [0, 1] axis
  CHECK(objective.plots[1].y_max == 1);
  // The accuracy curve's last point lands where the data says.
  const ui::PlotFrame& accuracy = objective.plots[1];
  CHECK(accuracy.contains(accuracy.to_pixel(40, 1.0)));

  // Distillation: the loss's KL and CE parts in one plot; full finetuning names no PEFT type.
  config.method = spec::Method::full;
  config.objective = "distill";
  info.config_json = train::to_json(config);
  info.trainable_parameters = {{"full weights", 1200000}};
  lines.clear();
  for (int64_t step = 1; step <= 10; step++)
    lines.push_back(objective_line(step, {{"distill/kl", 2.0 / static_cast<double>(step)}, {"distill/ce", 3.0}}));
  snapshot = replayed(info, lines);
  ui::DashboardState distill_state;
  data = imgui.frame([&] { ui::draw_dashboard(snapshot, distill_state, nullptr); });
  CHECK(distill_state.run.method == "full / distill");
  REQUIRE(distill_state.objective.groups == std::vector<std::string>{"distill"});
  CHECK(vertices_inside(data, distill_state.objective.plots[0], ui::objective_series_color(0)) >= 4);
  CHECK(vertices_inside(data, distill_state.objective.plots[0], ui::objective_series_color(1)) >= 4);

  // A run.json and metrics.jsonl from before these fields: no parts, no objective panel, LoRA on SFT.
  train::RunInfo old = synthetic_info(40);
  old.config_json = R"({"method": "lora"})";
  snapshot = replayed(old, {R"({"step": 1, "loss": 2.5, "lr": 0.0001})"}, true);
  CHECK(snapshot.info.trainable_parameters.empty());
  CHECK(!ui::has_objective_metrics(snapshot));
  ui::DashboardState old_state;
  imgui.frame([&] { ui::draw_dashboard(snapshot, old_state, nullptr); });
  CHECK(old_state.run.method == "lora / lora / sft");
  CHECK(old_state.objective.groups.empty());
}

}  // TEST_SUITE("ui")
