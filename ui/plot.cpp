#include "ui/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "ui/style.hpp"

namespace vkt::ui {

// ---- math -------------------------------------------------------------------------------------

Ticks nice_ticks(double low, double high, int target_count) {
  Ticks ticks;
  if (!std::isfinite(low) || !std::isfinite(high)) return ticks;
  if (high < low) std::swap(low, high);
  if (high == low) {  // one value: a small range around it
    double half = low == 0 ? 1.0 : std::fabs(low) * 0.1;
    low -= half;
    high += half;
  }
  target_count = std::max(target_count, 1);
  double raw_step = (high - low) / target_count;
  double magnitude = std::pow(10.0, std::floor(std::log10(raw_step)));
  double residual = raw_step / magnitude;  // in [1, 10)
  double multiple = residual < 1.5 ? 1 : residual < 3.5 ? 2 : residual < 7.5 ? 5 : 10;
  ticks.step = multiple * magnitude;
  // Integer multiples of the step, so that values do not drift by accumulated rounding.
  double first = std::ceil(low / ticks.step - 1e-9), last = std::floor(high / ticks.step + 1e-9);
  for (double k = first; k <= last; k += 1) {
    double value = k * ticks.step;
    if (std::fabs(value) < ticks.step * 1e-9) value = 0;  // -0.0 and 1e-17 become 0
    ticks.values.push_back(value);
  }
  return ticks;
}

std::vector<double> log_ticks(double low, double high, int target_count) {
  std::vector<double> values;
  if (!(low > 0) || !(high > 0) || !std::isfinite(low) || !std::isfinite(high)) return values;
  if (high < low) std::swap(low, high);
  double decades = std::log10(high) - std::log10(low);
  if (decades < 1) {
    for (double value : nice_ticks(low, high, target_count).values)
      if (value > 0) values.push_back(value);
    return values;
  }
  target_count = std::max(target_count, 2);
  // Few decades: 1, 2, 5 in each; many: every k-th power of ten.
  bool with_between = decades * 3 <= target_count;
  int decade_step = std::max(1, static_cast<int>(std::ceil(decades / target_count)));
  int first = static_cast<int>(std::floor(std::log10(low))), last = static_cast<int>(std::ceil(std::log10(high)));
  for (int exponent = first; exponent <= last; exponent++) {
    if (!with_between && (exponent % decade_step) != 0) continue;
    for (double multiple : {1.0, 2.0, 5.0}) {
      if (multiple != 1.0 && !with_between) break;
      double value = multiple * std::pow(10.0, exponent);
      if (value >= low * (1 - 1e-9) && value <= high * (1 + 1e-9)) values.push_back(value);
    }
  }
  return values;
}

std::vector<double> smooth_debiased_ema(std::span<const double> values, double weight) {
  std::vector<double> smoothed(values.begin(), values.end());
  weight = std::clamp(weight, 0.0, 0.999999);
  if (weight == 0 || values.empty()) return smoothed;
  bool constant = std::all_of(values.begin(), values.end(), [&](double v) { return v == values[0]; });
  if (constant) return smoothed;
  double last = 0, weight_power = 1;  // weight_power = weight^n after n finite values
  for (size_t i = 0; i < values.size(); i++) {
    if (!std::isfinite(values[i])) continue;  // passes through as is
    last = last * weight + (1 - weight) * values[i];
    weight_power *= weight;
    smoothed[i] = last / (1 - weight_power);
  }
  return smoothed;
}

std::vector<size_t> decimate_min_max(std::span<const double> x, std::span<const double> y, double x_begin, double x_end,
                                     int columns) {
  std::vector<size_t> kept;
  size_t n = std::min(x.size(), y.size());
  if (n == 0) return kept;
  columns = std::max(columns, 1);
  double width = x_end > x_begin ? x_end - x_begin : 1.0;
  // Column -1 holds what lies left of the range (only its last point matters), `columns` what
  // lies right of it (only its first point matters).
  auto column_of = [&](double value) -> long {
    if (value < x_begin) return -1;
    if (value > x_end) return columns;
    return std::min<long>(columns - 1, static_cast<long>((value - x_begin) / width * columns));
  };
  long current = std::numeric_limits<long>::min();
  size_t first = 0, last = 0, lowest = 0, highest = 0;
  bool open = false;
  auto flush = [&] {
    if (!open) return;
    size_t picks[4] = {first, lowest, highest, last};
    size_t count = 4;
    if (current == -1) {
      picks[0] = last;
      count = 1;
    }
    if (current == columns) {
      picks[0] = first;
      count = 1;
    }
    std::sort(picks, picks + count);
    for (size_t k = 0; k < count; k++)
      if (kept.empty() || kept.back() != picks[k]) kept.push_back(picks[k]);
    open = false;
  };
  for (size_t i = 0; i < n; i++) {
    if (!std::isfinite(y[i]) || !std::isfinite(x[i])) continue;
    long column = column_of(x[i]);
    if (!open || column != current) {
      flush();
      current = column;
      first = last = lowest = highest = i;
      open = true;
      continue;
    }
    last = i;
    if (y[i] < y[lowest]) lowest = i;
    if (y[i] > y[highest]) highest = i;
  }
  flush();
  return kept;
}

size_t nearest_index(std::span<const double> x, double target) {
  auto it = std::lower_bound(x.begin(), x.end(), target);
  if (it == x.begin()) return 0;
  if (it == x.end()) return x.size() - 1;
  size_t right = static_cast<size_t>(it - x.begin());
  return (target - x[right - 1] <= x[right] - target) ? right - 1 : right;
}

std::string format_tick(double value, double step) {
  char text[48];
  if (value == 0) return "0";
  double magnitude = std::fabs(value);
  step = std::fabs(step) > 0 ? std::fabs(step) : magnitude;
  auto decimals_for = [](double spacing) {
    return std::clamp(static_cast<int>(-std::floor(std::log10(spacing) + 1e-9)), 0, 6);
  };
  if (magnitude >= 1e4) {  // 12k, 1.5M: token counts and throughputs
    const char* suffixes[] = {"", "k", "M", "G", "T"};
    int unit = 0;
    double scaled = value, scaled_step = step;
    while (std::fabs(scaled) >= 1000 && unit < 4) {
      scaled /= 1000;
      scaled_step /= 1000;
      unit++;
    }
    std::snprintf(text, sizeof text, "%.*f%s", std::min(decimals_for(scaled_step), 3), scaled, suffixes[unit]);
    return text;
  }
  if (magnitude < 1e-3) {  // 2e-4, 1.5e-5: learning rates
    int exponent = static_cast<int>(std::floor(std::log10(magnitude) + 1e-9));
    double mantissa = value / std::pow(10.0, exponent);
    int digits = std::clamp(exponent - static_cast<int>(std::floor(std::log10(step) + 1e-9)), 0, 3);
    std::snprintf(text, sizeof text, "%.*fe%d", digits, mantissa, exponent);
    return text;
  }
  std::snprintf(text, sizeof text, "%.*f", decimals_for(step), value);
  return text;
}

// ---- the widget -------------------------------------------------------------------------------

float PlotFrame::to_pixel_x(double x) const {
  double t = x_max > x_min ? (x - x_min) / (x_max - x_min) : 0.5;
  return area_min.x + static_cast<float>(t) * (area_max.x - area_min.x);
}

float PlotFrame::to_pixel_y(double y) const {
  double t;
  if (log_y) {
    double low = std::log10(y_min), high = std::log10(y_max);
    t = y > 0 && high > low ? (std::log10(y) - low) / (high - low) : 0.0;
  } else {
    t = y_max > y_min ? (y - y_min) / (y_max - y_min) : 0.5;
  }
  return area_max.y - static_cast<float>(t) * (area_max.y - area_min.y);
}

double PlotFrame::from_pixel_x(float pixel_x) const {
  float width = area_max.x - area_min.x;
  return x_min + (width > 0 ? (pixel_x - area_min.x) / width : 0.0) * (x_max - x_min);
}

namespace {

bool drawable(double y, bool log_y) { return std::isfinite(y) && (!log_y || y > 0); }

std::string format_value(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}

struct Fit {
  bool any = false;
  double x_min = 0, x_max = 0, y_min = 0, y_max = 0;  // y in the axis space (log10 when log_y)
};

Fit fit_data(const PlotSpec& spec) {
  Fit fit;
  for (const auto& series : spec.series) {
    size_t n = std::min(series.x.size(), series.y.size());
    for (size_t i = 0; i < n; i++) {
      double y = series.y[i];
      if (!drawable(y, spec.log_y) || !std::isfinite(series.x[i])) continue;
      double axis_y = spec.log_y ? std::log10(y) : y;
      if (!fit.any) {
        fit = {true, series.x[i], series.x[i], axis_y, axis_y};
        continue;
      }
      fit.x_min = std::min(fit.x_min, series.x[i]);
      fit.x_max = std::max(fit.x_max, series.x[i]);
      fit.y_min = std::min(fit.y_min, axis_y);
      fit.y_max = std::max(fit.y_max, axis_y);
    }
  }
  return fit;
}

// Sets the frame's data ranges: the data fitted with padding, then the spec's fixed limits.
void fit_ranges(const PlotSpec& spec, const Fit& fit, PlotFrame& frame) {
  double x_min = fit.x_min, x_max = fit.x_max;
  double y_low = fit.y_min, y_high = fit.y_max;  // axis space
  if (fit.any) {
    if (x_max == x_min) {
      x_min -= 0.5;
      x_max += 0.5;
    }
    double x_pad = (x_max - x_min) * 0.01;  // keeps end points (eval dots) off the border
    x_min -= x_pad;
    x_max += x_pad;
    if (y_high == y_low) {
      double half = spec.log_y ? 0.1 : (y_low == 0 ? 1.0 : std::fabs(y_low) * 0.05);
      y_low -= half;
      y_high += half;
    }
    double y_pad = (y_high - y_low) * spec.padding;
    y_low -= y_pad;
    y_high += y_pad;
  }
  if (spec.x_min) x_min = *spec.x_min;
  if (spec.x_max) x_max = *spec.x_max;
  if (spec.y_min) y_low = spec.log_y ? std::log10(std::max(*spec.y_min, 1e-300)) : *spec.y_min;
  if (spec.y_max) y_high = spec.log_y ? std::log10(std::max(*spec.y_max, 1e-300)) : *spec.y_max;
  if (!(x_max > x_min)) x_max = x_min + 1;
  if (!(y_high > y_low)) y_high = y_low + 1;
  frame.x_min = x_min;
  frame.x_max = x_max;
  frame.y_min = spec.log_y ? std::pow(10.0, y_low) : y_low;
  frame.y_max = spec.log_y ? std::pow(10.0, y_high) : y_high;
}

struct AxisTicks {
  std::vector<double> y_values;
  std::vector<std::string> y_labels;  // one per y value
  Ticks x;
};

// Places the data area inside the widget (origin, size): tick labels below and left of it, the
// x label under them, the y label above. Returns the ticks (their labels set the left margin).
AxisTicks layout_area(const PlotSpec& spec, ImVec2 origin, ImVec2 size, PlotFrame& frame) {
  const float line_height = ImGui::GetTextLineHeight();
  float bottom = line_height + 6 + (spec.x_label.empty() ? 0 : line_height + 2);
  float top = spec.y_label.empty() ? 4 : line_height + 4;
  float area_height = std::max(10.0f, size.y - top - bottom);
  int y_tick_target = std::clamp(static_cast<int>(area_height / 38), 2, 10);
  AxisTicks ticks;
  double y_step = 0;
  if (spec.log_y) {
    ticks.y_values = log_ticks(frame.y_min, frame.y_max, y_tick_target);
  } else {
    Ticks t = nice_ticks(frame.y_min, frame.y_max, y_tick_target);
    ticks.y_values = t.values;
    y_step = t.step;
  }
  float left = 0;
  for (double value : ticks.y_values) {
    ticks.y_labels.push_back(format_tick(value, spec.log_y ? value : y_step));
    left = std::max(left, ImGui::CalcTextSize(ticks.y_labels.back().c_str()).x);
  }
  left += 8;
  float right = 14;
  frame.area_min = ImVec2(origin.x + left, origin.y + top);
  frame.area_max = ImVec2(origin.x + size.x - right, origin.y + top + area_height);
  const float area_width = frame.area_max.x - frame.area_min.x;
  int x_tick_target = std::clamp(static_cast<int>(area_width / 90), 2, 12);
  ticks.x = nice_ticks(frame.x_min, frame.x_max, x_tick_target);
  return ticks;
}

// Background, grid, tick labels, axis labels and the border.
void draw_axes(ImDrawList* draw, const PlotSpec& spec, const PlotFrame& frame, const AxisTicks& ticks, ImVec2 origin,
               ImVec2 size) {
  const float line_height = ImGui::GetTextLineHeight();
  draw->AddRectFilled(frame.area_min, frame.area_max, colors::plot_background);
  for (size_t i = 0; i < ticks.y_values.size(); i++) {
    float py = frame.to_pixel_y(ticks.y_values[i]);
    if (py < frame.area_min.y - 0.5f || py > frame.area_max.y + 0.5f) continue;
    draw->AddLine(ImVec2(frame.area_min.x, py), ImVec2(frame.area_max.x, py), colors::grid);
    ImVec2 text_size = ImGui::CalcTextSize(ticks.y_labels[i].c_str());
    draw->AddText(ImVec2(frame.area_min.x - 4 - text_size.x, py - text_size.y * 0.5f), colors::axis_text,
                  ticks.y_labels[i].c_str());
  }
  for (double value : ticks.x.values) {
    float px = frame.to_pixel_x(value);
    if (px < frame.area_min.x - 0.5f || px > frame.area_max.x + 0.5f) continue;
    draw->AddLine(ImVec2(px, frame.area_min.y), ImVec2(px, frame.area_max.y), colors::grid);
    std::string label = format_tick(value, ticks.x.step);
    ImVec2 text_size = ImGui::CalcTextSize(label.c_str());
    float text_x = std::clamp(px - text_size.x * 0.5f, origin.x, origin.x + size.x - text_size.x);
    draw->AddText(ImVec2(text_x, frame.area_max.y + 3), colors::axis_text, label.c_str());
  }
  if (!spec.x_label.empty()) {
    ImVec2 text_size = ImGui::CalcTextSize(spec.x_label.c_str());
    draw->AddText(ImVec2(frame.area_max.x - text_size.x, frame.area_max.y + line_height + 5), colors::axis_text,
                  spec.x_label.c_str());
  }
  if (!spec.y_label.empty()) draw->AddText(ImVec2(origin.x + 2, origin.y + 1), colors::axis_text, spec.y_label.c_str());
  draw->AddRect(frame.area_min, frame.area_max, IM_COL32(255, 255, 255, 45));
}

void draw_no_data(ImDrawList* draw, const PlotFrame& frame) {
  const char* text = "no data yet";
  ImVec2 text_size = ImGui::CalcTextSize(text);
  draw->AddText(ImVec2((frame.area_min.x + frame.area_max.x - text_size.x) * 0.5f,
                       (frame.area_min.y + frame.area_max.y - text_size.y) * 0.5f),
                colors::axis_text, text);
}

void draw_shades(ImDrawList* draw, const PlotSpec& spec, const PlotFrame& frame) {
  for (const auto& shade : spec.shades) {
    float begin = frame.to_pixel_x(shade.x_begin), end = frame.to_pixel_x(shade.x_end);
    if (end <= begin) continue;
    draw->AddRectFilled(ImVec2(begin, frame.area_min.y), ImVec2(end, frame.area_max.y), shade.color);
    // The label goes inside when it fits; otherwise the legend names the shade.
    if (!shade.label.empty() && ImGui::CalcTextSize(shade.label.c_str()).x + 6 < end - begin)
      draw->AddText(ImVec2(begin + 3, frame.area_min.y + 2), colors::axis_text, shade.label.c_str());
  }
}

// Every series, reduced to at most four points per pixel column of the data area.
void draw_series(ImDrawList* draw, const PlotSpec& spec, const PlotFrame& frame) {
  const int columns = std::max(1, static_cast<int>(frame.area_max.x - frame.area_min.x));
  std::vector<ImVec2> points;
  for (const auto& series : spec.series) {
    std::vector<size_t> kept = decimate_min_max(series.x, series.y, frame.x_min, frame.x_max, columns);
    if (series.style == SeriesStyle::points) {
      float last_x = -1e30f, last_y = -1e30f;
      for (size_t i : kept) {
        if (!drawable(series.y[i], spec.log_y)) continue;
        ImVec2 p = frame.to_pixel(series.x[i], series.y[i]);
        if (std::fabs(p.x - last_x) < 1 && std::fabs(p.y - last_y) < 1) continue;  // same pixel
        draw->AddCircleFilled(p, 3.5f, series.color, 12);
        last_x = p.x;
        last_y = p.y;
      }
      continue;
    }
    float thickness = series.style == SeriesStyle::faint_line ? 1.0f : 2.0f;
    points.clear();
    auto flush = [&] {
      if (points.size() >= 2)
        draw->AddPolyline(points.data(), static_cast<int>(points.size()), series.color, 0, thickness);
      else if (points.size() == 1)
        draw->AddCircleFilled(points[0], thickness + 0.5f, series.color, 8);
      points.clear();
    };
    for (size_t i : kept) {
      if (!drawable(series.y[i], spec.log_y)) {  // a gap in a log plot
        flush();
        continue;
      }
      points.push_back(frame.to_pixel(series.x[i], series.y[i]));
    }
    flush();
  }
}

void draw_markers(ImDrawList* draw, const PlotSpec& spec, const PlotFrame& frame) {
  for (const auto& marker : spec.markers) {
    float px = frame.to_pixel_x(marker.x);
    draw->AddLine(ImVec2(px, frame.area_min.y), ImVec2(px, frame.area_max.y), marker.color, 1.5f);
    if (!marker.label.empty()) {
      ImVec2 text_size = ImGui::CalcTextSize(marker.label.c_str());
      float text_x = px + 3 + text_size.x > frame.area_max.x ? px - 3 - text_size.x : px + 3;
      draw->AddText(ImVec2(text_x, frame.area_max.y - text_size.y - 2), marker.color, marker.label.c_str());
    }
  }
}

// The legend in the top right corner of the data area: labelled series, then labelled shades.
void draw_legend(ImDrawList* draw, const PlotSpec& spec, const PlotFrame& frame) {
  const float line_height = ImGui::GetTextLineHeight();
  float y = frame.area_min.y + 4, swatch = 14;
  float widest = 0;
  int rows = 0;
  for (const auto& series : spec.series)
    if (series.in_readout && !series.label.empty()) {
      widest = std::max(widest, ImGui::CalcTextSize(series.label.c_str()).x);
      rows++;
    }
  for (const auto& shade : spec.shades)
    if (!shade.label.empty()) {
      widest = std::max(widest, ImGui::CalcTextSize(shade.label.c_str()).x);
      rows++;
    }
  if (rows == 0) return;
  float box_width = widest + swatch + 14;
  ImVec2 box_min(frame.area_max.x - box_width - 4, y - 2);
  draw->AddRectFilled(box_min, ImVec2(frame.area_max.x - 4, y + rows * line_height + 2), IM_COL32(16, 17, 20, 200), 3);
  for (const auto& series : spec.series) {
    if (!series.in_readout || series.label.empty()) continue;
    float mid = y + line_height * 0.5f;
    ImU32 color = series.color | IM_COL32(0, 0, 0, 255);
    if (series.style == SeriesStyle::points)
      draw->AddCircleFilled(ImVec2(box_min.x + 4 + swatch * 0.5f, mid), 3.5f, color);
    else
      draw->AddLine(ImVec2(box_min.x + 4, mid), ImVec2(box_min.x + 4 + swatch, mid), color, 2);
    draw->AddText(ImVec2(box_min.x + 8 + swatch, y), colors::axis_text, series.label.c_str());
    y += line_height;
  }
  for (const auto& shade : spec.shades) {
    if (shade.label.empty()) continue;
    ImU32 opaque = (shade.color & 0x00FFFFFF) | IM_COL32(0, 0, 0, 140);
    draw->AddRectFilled(ImVec2(box_min.x + 4, y + 3), ImVec2(box_min.x + 4 + swatch, y + line_height - 3), opaque);
    draw->AddText(ImVec2(box_min.x + 8 + swatch, y), colors::axis_text, shade.label.c_str());
    y += line_height;
  }
}

// Hover readout: the x nearest to the mouse among all series, and every series' value there.
void draw_hover_readout(ImDrawList* draw, const PlotSpec& spec, PlotFrame& frame, bool item_hovered) {
  ImVec2 mouse = ImGui::GetIO().MousePos;
  if (!item_hovered || !frame.contains(mouse)) return;
  frame.hovered = true;
  frame.hover_x = frame.from_pixel_x(mouse.x);
  double best_x = 0, best_distance = INFINITY;
  for (const auto& series : spec.series) {
    if (!series.in_readout || series.x.empty()) continue;
    double x = series.x[nearest_index(series.x, frame.hover_x)];
    if (std::fabs(x - frame.hover_x) < best_distance) {
      best_distance = std::fabs(x - frame.hover_x);
      best_x = x;
    }
  }
  if (!std::isfinite(best_distance)) return;
  float px = frame.to_pixel_x(best_x);
  draw->AddLine(ImVec2(px, frame.area_min.y), ImVec2(px, frame.area_max.y), IM_COL32(255, 255, 255, 90));
  ImGui::BeginTooltip();
  std::string x_text = spec.format_x ? spec.format_x(best_x) : format_value(best_x);
  ImGui::Text("%s %s", spec.x_label.empty() ? "x" : spec.x_label.c_str(), x_text.c_str());
  for (const auto& series : spec.series) {
    if (!series.in_readout || series.x.empty()) continue;
    size_t i = nearest_index(series.x, best_x);
    if (i >= series.y.size()) continue;
    std::string value = spec.format_y ? spec.format_y(series.y[i]) : format_value(series.y[i]);
    ImU32 color = series.color | IM_COL32(0, 0, 0, 255);
    if (drawable(series.y[i], spec.log_y) && frame.contains(frame.to_pixel(series.x[i], series.y[i])))
      draw->AddCircle(frame.to_pixel(series.x[i], series.y[i]), 5, color, 12, 2);
    ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(color), "%s: %s", series.label.c_str(), value.c_str());
    if (series.x[i] != best_x) {
      std::string at = spec.format_x ? spec.format_x(series.x[i]) : format_value(series.x[i]);
      ImGui::SameLine();
      ImGui::TextDisabled("(at %s)", at.c_str());
    }
  }
  ImGui::EndTooltip();
}

}  // namespace

PlotFrame draw_plot(const PlotSpec& spec, ImVec2 size) {
  PlotFrame frame;
  frame.log_y = spec.log_y;
  ImVec2 available = ImGui::GetContentRegionAvail();
  if (size.x <= 0) size.x = available.x;
  if (size.y <= 0) size.y = available.y;
  size.x = std::max(size.x, 60.0f);
  size.y = std::max(size.y, 50.0f);
  ImVec2 origin = ImGui::GetCursorScreenPos();
  ImGui::InvisibleButton(spec.id, size);
  bool item_hovered = ImGui::IsItemHovered();
  ImDrawList* draw = ImGui::GetWindowDrawList();

  Fit fit = fit_data(spec);
  fit_ranges(spec, fit, frame);
  AxisTicks ticks = layout_area(spec, origin, size, frame);
  draw_axes(draw, spec, frame, ticks, origin, size);
  if (!fit.any) {
    draw_no_data(draw, frame);
    return frame;
  }
  frame.drawn = true;

  draw->PushClipRect(frame.area_min, frame.area_max, true);
  draw_shades(draw, spec, frame);
  draw_series(draw, spec, frame);
  draw_markers(draw, spec, frame);
  draw->PopClipRect();
  if (spec.legend) draw_legend(draw, spec, frame);
  draw_hover_readout(draw, spec, frame, item_hovered);
  return frame;
}

}  // namespace vkt::ui
