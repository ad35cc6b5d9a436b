// The memory panel: the planner's estimate (run.json) and the ledger's measured bytes (the latest
// logged step) as two stacked bars, one segment per ledger category, against the device budget;
// optimizer states offloaded to host memory are a hatched segment after the device ones (they
// do not count against the device budget). A table beside the bars lists the numbers, with finer
// rows for each adapter kind (LoRA, DoRA, IA3, soft prompt, modules_to_save, trainable tokens) and
// a distillation teacher.
#include <imgui.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include "engine/base/files.hpp"
#include "ui/panels.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

namespace {

// Short names for the narrow table; the bars' tooltips use the long ones.
const char* short_name(vk::Category category) {
  switch (category) {
    case vk::Category::base_weights:
      return "base weights";
    case vk::Category::quantized_weights:
      return "quantized";
    case vk::Category::adapter_params:
      return "adapter";
    case vk::Category::optimizer_state:
      return "optimizer";
    case vk::Category::master_weights:
      return "master";
    default:
      return nullptr;
  }
}

const char* pretty_name(vk::Category category) {
  switch (category) {
    case vk::Category::base_weights:
      return "base weights";
    case vk::Category::quantized_weights:
      return "quantized weights";
    case vk::Category::adapter_params:
      return "adapter params";
    case vk::Category::gradients:
      return "gradients";
    case vk::Category::optimizer_state:
      return "optimizer states";
    case vk::Category::master_weights:
      return "master weights";
    case vk::Category::activations:
      return "activations";
    case vk::Category::workspace:
      return "workspace";
    case vk::Category::kv_cache:
      return "KV cache";
    case vk::Category::staging:
      return "staging";
    default:
      return "?";
  }
}

// Three significant digits: "541 MiB", "1.42 GiB"; table cells are narrow.
std::string short_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1000.0 && unit < 4) {
    bytes /= 1024.0;
    unit++;
  }
  char text[32];
  std::snprintf(text, sizeof text,
                bytes >= 100 || unit == 0 ? "%.0f %s"
                : bytes >= 10             ? "%.1f %s"
                                          : "%.2f %s",
                bytes, units[unit]);
  return text;
}

struct Bar {
  const char* label;
  const std::array<uint64_t, vk::category_count>* bytes;  // nullptr: nothing measured yet
  uint64_t offloaded = 0;
  uint64_t device_total() const {
    uint64_t total = 0;
    if (bytes)
      for (uint64_t b : *bytes) total += b;
    return total;
  }
};

void draw_hatched(ImDrawList* draw, ImVec2 min, ImVec2 max, ImU32 color) {
  draw->AddRectFilled(min, max, (color & 0x00FFFFFF) | IM_COL32(0, 0, 0, 60));
  draw->PushClipRect(min, max, true);
  float height = max.y - min.y;
  for (float x = min.x - height; x < max.x; x += 6)
    draw->AddLine(ImVec2(x, max.y), ImVec2(x + height, min.y), color, 1.5f);
  draw->PopClipRect();
  draw->AddRect(min, max, color);
}

void draw_bars(const train::RunSnapshot& snapshot, MemoryPanelState& state, const Bar (&bars)[2]) {
  const auto& info = snapshot.info;
  ImDrawList* draw = ImGui::GetWindowDrawList();
  ImVec2 origin = ImGui::GetCursorScreenPos();
  ImVec2 available = ImGui::GetContentRegionAvail();
  const float line_height = ImGui::GetTextLineHeight();
  double largest = static_cast<double>(info.device_budget_bytes);
  for (const Bar& bar : bars) largest = std::max(largest, static_cast<double>(bar.device_total() + bar.offloaded));
  state.budget_x = 0;
  if (largest <= 0) {
    ImGui::TextDisabled("no memory plan or measurement yet");
    state.bytes_per_pixel = 0;
    return;
  }
  float label_width = ImGui::CalcTextSize("measured").x + 10;
  float bar_height = std::clamp((available.y - 3 * line_height - 12) / 2.6f, 12.0f, 30.0f);
  float gap = bar_height * 0.6f;
  float x0 = origin.x + label_width, x1 = origin.x + std::max(label_width + 50, available.x - 12);
  double scale_max = largest * 1.08;
  state.bar_origin_x = x0;
  state.bytes_per_pixel = scale_max / (x1 - x0);
  auto to_x = [&](double bytes) { return x0 + static_cast<float>(bytes / state.bytes_per_pixel); };
  float top = origin.y + line_height + 4;  // room for the budget label
  ImVec2 mouse = ImGui::GetIO().MousePos;
  bool window_hovered = ImGui::IsWindowHovered();
  const char* hovered_name = nullptr;
  double hovered_bytes = 0, hovered_total = 0;

  for (int b = 0; b < 2; b++) {
    const Bar& bar = bars[b];
    float y0 = top + b * (bar_height + gap), y1 = y0 + bar_height;
    (b == 0 ? state.planned_bar_y : state.measured_bar_y) = (y0 + y1) * 0.5f;
    draw->AddText(ImVec2(origin.x, (y0 + y1 - line_height) * 0.5f), colors::axis_text, bar.label);
    draw->AddRectFilled(ImVec2(x0, y0), ImVec2(x1, y1), colors::plot_background);
    if (!bar.bytes) {
      draw->AddText(ImVec2(x0 + 6, (y0 + y1 - line_height) * 0.5f), colors::axis_text, "no step logged yet");
      continue;
    }
    double offset = 0;
    double total = static_cast<double>(bar.device_total() + bar.offloaded);
    for (size_t c = 0; c < vk::category_count; c++) {
      double bytes = static_cast<double>((*bar.bytes)[c]);
      if (bytes <= 0) continue;
      ImVec2 min(to_x(offset), y0), max(std::max(to_x(offset + bytes), to_x(offset) + 1), y1);
      draw->AddRectFilled(min, max, colors::category(vk::Category(c)));
      if (window_hovered && mouse.x >= min.x && mouse.x < max.x && mouse.y >= y0 && mouse.y < y1) {
        hovered_name = pretty_name(vk::Category(c));
        hovered_bytes = bytes;
        hovered_total = total;
      }
      offset += bytes;
    }
    if (bar.offloaded > 0) {
      double bytes = static_cast<double>(bar.offloaded);
      ImVec2 min(to_x(offset), y0), max(std::max(to_x(offset + bytes), to_x(offset) + 2), y1);
      draw_hatched(draw, min, max, colors::offloaded);
      if (window_hovered && mouse.x >= min.x && mouse.x < max.x && mouse.y >= y0 && mouse.y < y1) {
        hovered_name = "optimizer states offloaded to host memory";
        hovered_bytes = bytes;
        hovered_total = total;
      }
    }
    std::string text = format_bytes(total);
    float text_x = to_x(total) + 6, text_width = ImGui::CalcTextSize(text.c_str()).x;
    if (text_x + text_width > x1) {  // no room after the bar: over its end, on a dark backdrop
      text_x = x1 - text_width - 4;
      draw->AddRectFilled(ImVec2(text_x - 3, y0 + 2), ImVec2(text_x + text_width + 3, y1 - 2),
                          IM_COL32(16, 17, 20, 210), 3);
    }
    draw->AddText(ImVec2(text_x, (y0 + y1 - line_height) * 0.5f), IM_COL32(235, 235, 235, 255), text.c_str());
  }
  float bars_bottom = top + 2 * bar_height + gap;

  // Axis in binary units below the bars.
  double unit = scale_max >= 2.0 * (1ull << 30) ? double(1ull << 30)
                : scale_max >= 2.0 * (1 << 20)  ? double(1 << 20)
                                                : 1024.0;
  const char* unit_name = unit == double(1ull << 30) ? "GiB" : unit == double(1 << 20) ? "MiB" : "KiB";
  Ticks ticks = nice_ticks(0, scale_max / unit, std::clamp(static_cast<int>((x1 - x0) / 80), 2, 10));
  for (double value : ticks.values) {
    float px = to_x(value * unit);
    if (px > x1 + 0.5f) continue;
    draw->AddLine(ImVec2(px, bars_bottom + 2), ImVec2(px, bars_bottom + 6), colors::axis_text);
    std::string label = format_tick(value, ticks.step) + (value == 0 ? "" : std::string(" ") + unit_name);
    float w = ImGui::CalcTextSize(label.c_str()).x;
    draw->AddText(ImVec2(std::clamp(px - w * 0.5f, x0, x1 - w), bars_bottom + 7), colors::axis_text, label.c_str());
  }

  if (info.device_budget_bytes > 0) {
    float px = to_x(static_cast<double>(info.device_budget_bytes));
    state.budget_x = px;
    for (float y = top - 4; y < bars_bottom + 4; y += 6)  // dashed
      draw->AddLine(ImVec2(px, y), ImVec2(px, std::min(y + 4, bars_bottom + 4)), colors::budget_line, 2);
    std::string label = "device budget " + format_bytes(static_cast<double>(info.device_budget_bytes));
    float w = ImGui::CalcTextSize(label.c_str()).x;
    draw->AddText(ImVec2(std::clamp(px - w * 0.5f, x0, x1 - w), origin.y), colors::budget_line, label.c_str());
  }
  ImGui::Dummy(ImVec2(available.x, bars_bottom + 8 + line_height - origin.y));
  if (hovered_name)
    ImGui::SetTooltip("%s: %s (%.1f%% of the bar)", hovered_name, format_bytes(hovered_bytes).c_str(),
                      hovered_total > 0 ? 100.0 * hovered_bytes / hovered_total : 0.0);
}

void swatch(ImU32 color) {
  ImVec2 p = ImGui::GetCursorScreenPos();
  float size = ImGui::GetTextLineHeight() * 0.7f;
  float pad = (ImGui::GetTextLineHeight() - size) * 0.5f;
  ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(p.x, p.y + pad), ImVec2(p.x + size, p.y + pad + size), color, 2);
  ImGui::Dummy(ImVec2(size, ImGui::GetTextLineHeight()));
  ImGui::SameLine();
}

void draw_table(const train::RunSnapshot& snapshot, MemoryPanelState& state, const Bar (&bars)[2]) {
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_SizingStretchProp |
                                ImGuiTableFlags_BordersInnerV;
  if (!ImGui::BeginTable("memory_table", 3, flags, ImVec2(0, 0))) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("category", ImGuiTableColumnFlags_WidthStretch, 2.0f);
  ImGui::TableSetupColumn("planned", ImGuiTableColumnFlags_WidthStretch, 1.1f);
  ImGui::TableSetupColumn("measured", ImGuiTableColumnFlags_WidthStretch, 1.1f);
  ImGui::TableHeadersRow();
  auto cell_bytes = [](uint64_t bytes, bool known, bool over) {
    if (!known)
      ImGui::TextDisabled("-");
    else if (over)
      ImGui::TextColored(ImVec4(1, 0.6f, 0.3f, 1), "%s", short_bytes(static_cast<double>(bytes)).c_str());
    else
      ImGui::TextUnformatted(short_bytes(static_cast<double>(bytes)).c_str());
  };
  // A measurement more than 10% above the plan is worth a look: the driver adds overhead, but
  // not that much.
  auto over_plan = [](uint64_t measured, uint64_t planned) { return planned > 0 && measured > planned + planned / 10; };
  bool measured_known = bars[1].bytes != nullptr;
  for (size_t c = 0; c < vk::category_count; c++) {
    uint64_t planned = (*bars[0].bytes)[c], measured = measured_known ? (*bars[1].bytes)[c] : 0;
    if (planned == 0 && measured == 0) continue;
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    swatch(colors::category(vk::Category(c)));
    const char* name = short_name(vk::Category(c));
    ImGui::TextUnformatted(name ? name : pretty_name(vk::Category(c)));
    state.table_rows.push_back(vk::category_name(vk::Category(c)));
    ImGui::TableNextColumn();
    cell_bytes(planned, true, false);
    ImGui::TableNextColumn();
    cell_bytes(measured, measured_known, over_plan(measured, planned));
  }
  // Finer rows (run.json's memory_parts): each adapter kind's parameters and gradients (inside the
  // rows above) and the distillation teacher (outside them), planned beside allocated.
  for (const train::MemoryPart& part : snapshot.info.memory_parts) {
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    const std::string name = (part.name == "teacher" ? "" : "  ") + part.name;
    ImGui::TextUnformatted(name.c_str());
    if (ImGui::IsItemHovered())
      ImGui::SetTooltip(part.name == "teacher" ? "the distillation teacher's weights and forward (--teacher)"
                                               : "parameters and gradients of this kind (within the rows above)");
    state.table_rows.push_back(part.name);
    ImGui::TableNextColumn();
    cell_bytes(part.planned, true, false);
    ImGui::TableNextColumn();
    cell_bytes(part.measured, part.measured > 0, over_plan(part.measured, part.planned));
  }
  if (bars[0].offloaded > 0 || bars[1].offloaded > 0) {
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    swatch(colors::offloaded);
    ImGui::TextUnformatted("offloaded");
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("optimizer states in host memory (--offload-optimizer)");
    ImGui::TableNextColumn();
    cell_bytes(bars[0].offloaded, true, false);
    ImGui::TableNextColumn();
    cell_bytes(bars[1].offloaded, measured_known, over_plan(bars[1].offloaded, bars[0].offloaded));
  }
  ImGui::TableNextRow();
  ImGui::TableNextColumn();
  ImGui::TextUnformatted("device total");
  ImGui::TableNextColumn();
  cell_bytes(bars[0].device_total(), true, false);
  ImGui::TableNextColumn();
  cell_bytes(bars[1].device_total(), measured_known, over_plan(bars[1].device_total(), bars[0].device_total()));
  if (snapshot.info.device_budget_bytes > 0) {
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ImGui::TextUnformatted("device budget");
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(short_bytes(static_cast<double>(snapshot.info.device_budget_bytes)).c_str());
  }
  ImGui::EndTable();
}

}  // namespace

void draw_memory_panel(const train::RunSnapshot& snapshot, MemoryPanelState& state) {
  const auto& info = snapshot.info;
  const train::StepMetrics* last = snapshot.steps.empty() ? nullptr : &snapshot.steps.back();
  Bar bars[2] = {{"planned", &info.planned_bytes, info.planned_offload_bytes},
                 {"measured", last ? &last->memory_bytes : nullptr, last ? last->offloaded_optimizer_bytes : 0}};
  panel_title("Memory");
  ImGui::SameLine();
  if (last)
    ImGui::TextDisabled("plan vs. ledger at step %lld", static_cast<long long>(last->step));
  else
    ImGui::TextDisabled("plan (nothing measured yet)");
  ImVec2 available = ImGui::GetContentRegionAvail();
  // The table needs ~300 px to be readable; the bars take the rest (at least 200 px).
  float bars_width = std::max(200.0f, std::max(available.x * 0.5f, available.x - 320.0f));
  if (available.x < 540) bars_width = std::max(200.0f, available.x - 300.0f);
  ImGui::BeginChild("memory_bars", ImVec2(bars_width, 0), false, ImGuiWindowFlags_NoScrollbar);
  draw_bars(snapshot, state, bars);
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("memory_numbers", ImVec2(0, 0), false);
  state.table_rows.clear();
  draw_table(snapshot, state, bars);
  ImGui::EndChild();
}

}  // namespace vkt::ui
