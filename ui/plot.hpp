#pragma once
// The dashboard's one plot widget, drawn with ImDrawList (no ImPlot): axes with 1-2-5 ticks,
// line / faint line / point series, shaded x-ranges, vertical markers, a hover readout of every
// series at the nearest x, auto-fit with padding, optional log-scale y. Long series are reduced
// to at most four points per pixel column (first, min, max, last) before drawing, so 100k
// logged steps cost what ~4 x width points cost and still show every spike.
//
// The math (ticks, smoothing, decimation, nearest point) is separate from drawing so that tests
// can check it without a frame.
#include <imgui.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vkt::ui {

// ---- math -------------------------------------------------------------------------------------

// Ticks on a 1-2-5 grid: the step is 1, 2 or 5 times a power of ten, chosen so that about
// `target_count` ticks cover [low, high]; values are the multiples of the step inside the range.
struct Ticks {
  double step = 0;
  std::vector<double> values;
};
Ticks nice_ticks(double low, double high, int target_count);
// Ticks for a log-scale axis over [low, high] (both > 0): powers of ten, with 2x and 5x between
// them when the range spans few decades; falls back to nice_ticks when it spans less than one.
std::vector<double> log_ticks(double low, double high, int target_count);

// TensorBoard's smoothing: an exponential moving average, debiased by 1 - weight^n as Adam
// does, so the first values are not pulled towards 0. weight in [0, 1): 0 returns the input.
// Non-finite values pass through unchanged and do not enter the average; a constant series
// is returned as is (TensorBoard does the same, avoiding rounding noise).
std::vector<double> smooth_debiased_ema(std::span<const double> values, double weight);

// Indices of the points to draw for a series with ascending x when the x range
// [x_begin, x_end] spans `columns` pixel columns: per column the first, the lowest, the highest
// and the last point (ascending, no duplicates). Points outside the range keep one column on
// each side, so lines still run to the edge. Non-finite y values are skipped.
std::vector<size_t> decimate_min_max(std::span<const double> x, std::span<const double> y, double x_begin, double x_end,
                                     int columns);

// Index of the element of ascending `x` nearest to `target` (x must not be empty).
size_t nearest_index(std::span<const double> x, double target);

// Short axis labels: "0.5", "1.2k", "3M", "2e-4"; `step` is the tick spacing (decides the digits).
std::string format_tick(double value, double step);

// ---- the widget -------------------------------------------------------------------------------

enum class SeriesStyle {
  line,        // a solid line
  faint_line,  // the same line, thin and translucent (raw values behind a smoothed curve)
  points,      // filled circles (evaluations)
};

struct PlotSeries {
  std::string label;
  std::span<const double> x;  // (n) ascending
  std::span<const double> y;  // (n)
  ImU32 color = IM_COL32(255, 255, 255, 255);
  SeriesStyle style = SeriesStyle::line;
  bool in_readout = true;  // listed in the hover readout and the legend
};

struct PlotShade {  // a shaded x-range, e.g. the warmup steps
  double x_begin = 0, x_end = 0;
  ImU32 color = IM_COL32(255, 255, 255, 30);
  std::string label;  // drawn at the top of the range
};

struct PlotMarker {  // a vertical line, e.g. the current step
  double x = 0;
  ImU32 color = IM_COL32(255, 255, 255, 200);
  std::string label;
};

struct PlotSpec {
  const char* id = "plot";  // ImGui id, unique within the window
  std::vector<PlotSeries> series;
  std::vector<PlotShade> shades;
  std::vector<PlotMarker> markers;
  std::string x_label, y_label;
  bool log_y = false;     // y on a log10 scale; values <= 0 are not drawn
  double padding = 0.05;  // auto-fit adds this fraction of the data range on each side of y
  // Fixed limits instead of the fitted ones (each one separately).
  std::optional<double> x_min, x_max, y_min, y_max;
  // Text of values in the hover readout (default: 4 significant digits) and of x there.
  std::function<std::string(double)> format_x, format_y;
  bool legend = true;
};

// Where a plot was drawn: the data area on screen and its data ranges, to map data to pixels.
struct PlotFrame {
  bool drawn = false;                                 // false until a plot with data was drawn
  ImVec2 area_min{}, area_max{};                      // the data area, screen pixels
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;  // data ranges (y in data units even when log)
  bool log_y = false;
  bool hovered = false;
  double hover_x = 0;  // data x under the mouse when hovered
  float to_pixel_x(double x) const;
  float to_pixel_y(double y) const;
  ImVec2 to_pixel(double x, double y) const { return {to_pixel_x(x), to_pixel_y(y)}; }
  double from_pixel_x(float pixel_x) const;
  bool contains(ImVec2 pixel) const {
    return pixel.x >= area_min.x && pixel.x <= area_max.x && pixel.y >= area_min.y && pixel.y <= area_max.y;
  }
};

// Draws the plot at the cursor, taking `size` pixels (a component <= 0 takes the available
// width/height), and returns where it went. Without any drawable point it draws an empty frame
// with "no data yet" and returns drawn = false.
PlotFrame draw_plot(const PlotSpec& spec, ImVec2 size);

}  // namespace vkt::ui
