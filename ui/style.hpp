#pragma once
// The dashboard's look in one place: series and ledger-category colours, the ImGui style, and
// the font. The window, the offscreen renderer and the tests all call setup_imgui_context(), so
// a PNG looks like the window.
#include <imgui.h>

#include "engine/vk/memory.hpp"

namespace vkt::ui::colors {

// TensorBoard habits: the smoothed curve in orange, the raw one faint behind it.
constexpr ImU32 loss = IM_COL32(255, 140, 26, 255);
constexpr ImU32 loss_raw = IM_COL32(255, 140, 26, 50);
constexpr ImU32 eval_loss = IM_COL32(64, 170, 255, 255);
constexpr ImU32 best_step = IM_COL32(64, 170, 255, 150);  // the best evaluation (--load-best-model-at-end)
// Further --eval-data sets (eval_<name>_loss), in the order they were first logged.
constexpr ImU32 other_eval(size_t index) {
  constexpr ImU32 palette[] = {IM_COL32(240, 90, 200, 255), IM_COL32(250, 230, 80, 255), IM_COL32(120, 230, 230, 255),
                               IM_COL32(200, 200, 200, 255)};
  return palette[index % 4];
}
constexpr ImU32 learning_rate = IM_COL32(90, 210, 120, 255);
constexpr ImU32 learning_rate_logged = IM_COL32(240, 240, 240, 230);
constexpr ImU32 warmup_shade = IM_COL32(255, 210, 60, 50);
constexpr ImU32 current_step = IM_COL32(255, 90, 90, 220);
constexpr ImU32 tokens_per_second = IM_COL32(190, 120, 255, 255);
constexpr ImU32 step_time = IM_COL32(60, 200, 200, 255);
constexpr ImU32 budget_line = IM_COL32(255, 70, 70, 255);
constexpr ImU32 offloaded = IM_COL32(150, 150, 150, 255);
// Backgrounds: the clear colour behind everything and the inside of plots.
constexpr ImU32 background = IM_COL32(24, 26, 30, 255);
constexpr ImU32 plot_background = IM_COL32(16, 17, 20, 255);
constexpr ImU32 grid = IM_COL32(255, 255, 255, 22);
constexpr ImU32 axis_text = IM_COL32(170, 175, 185, 255);

// One colour per memory ledger category (stacked bars and their legend).
ImU32 category(vk::Category category);

}  // namespace vkt::ui::colors

namespace vkt::ui {

// Style, colours and fonts for a fresh ImGui context (call once after ImGui::CreateContext, before
// the font atlas is built). Loads DejaVu Sans when the system has it, else ImGui's built-in font.
// Disables imgui.ini: the layout is fixed and a dashboard should not write files into the cwd.
void setup_imgui_context(float font_size = 15.0f);

// A panel's heading, in the accent colour; the caller continues on the same line if it wants.
void panel_title(const char* title);

}  // namespace vkt::ui
