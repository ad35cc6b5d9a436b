#include "ui/style.hpp"

#include <filesystem>

namespace vkt::ui {

namespace colors {

ImU32 category(vk::Category category) {
  switch (category) {
    case vk::Category::base_weights:
      return IM_COL32(86, 132, 214, 255);
    case vk::Category::quantized_weights:
      return IM_COL32(64, 190, 220, 255);
    case vk::Category::adapter_params:
      return IM_COL32(110, 205, 110, 255);
    case vk::Category::gradients:
      return IM_COL32(230, 200, 70, 255);
    case vk::Category::optimizer_state:
      return IM_COL32(240, 140, 50, 255);
    case vk::Category::master_weights:
      return IM_COL32(250, 110, 40, 255);
    case vk::Category::activations:
      return IM_COL32(225, 85, 110, 255);
    case vk::Category::workspace:
      return IM_COL32(170, 110, 220, 255);
    case vk::Category::kv_cache:
      return IM_COL32(200, 160, 120, 255);
    case vk::Category::staging:
      return IM_COL32(120, 130, 145, 255);
    default:
      return IM_COL32(200, 200, 200, 255);
  }
}

}  // namespace colors

void setup_imgui_context(float font_size) {
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;
  io.LogFilename = nullptr;
  ImGui::StyleColorsDark();
  ImGuiStyle& style = ImGui::GetStyle();
  style.WindowRounding = 0;
  style.ChildRounding = 4;
  style.FrameRounding = 3;
  style.GrabRounding = 3;
  style.WindowPadding = ImVec2(8, 8);
  style.ItemSpacing = ImVec2(8, 5);
  style.Colors[ImGuiCol_WindowBg] = ImGui::ColorConvertU32ToFloat4(colors::background);
  style.Colors[ImGuiCol_ChildBg] = ImVec4(1, 1, 1, 0.02f);
  style.Colors[ImGuiCol_Border] = ImVec4(1, 1, 1, 0.12f);
  // A TrueType font reads much better than the built-in bitmap font at dashboard sizes; Debian
  // and most Linux systems ship DejaVu (fonts-dejavu-core). Without it the built-in font is used.
  for (const char* path : {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf",
                           "/usr/share/fonts/dejavu/DejaVuSans.ttf"}) {
    std::error_code error;
    if (std::filesystem::exists(path, error) && io.Fonts->AddFontFromFileTTF(path, font_size)) return;
  }
  io.Fonts->AddFontDefault();
}

void panel_title(const char* title) { ImGui::TextColored(ImVec4(0.95f, 0.78f, 0.45f, 1.0f), "%s", title); }

}  // namespace vkt::ui
