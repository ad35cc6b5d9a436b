#include "ui/dashboard.hpp"

#include <imgui.h>
#include <algorithm>

namespace vkt::ui {

namespace {

// A bordered child region for one panel; the panel draws inside it.
template <class Draw>
void panel(const char* id, ImVec2 size, Draw&& draw) {
  ImGui::BeginChild(id, size, true, ImGuiWindowFlags_NoScrollbar | ImGuiWindowFlags_NoScrollWithMouse);
  draw();
  ImGui::EndChild();
}

}  // namespace

void draw_dashboard(const train::RunSnapshot& snapshot, DashboardState& state, train::RunMonitor* controls) {
  const ImGuiIO& io = ImGui::GetIO();
  ImGui::SetNextWindowPos(ImVec2(0, 0));
  ImGui::SetNextWindowSize(io.DisplaySize);
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize |
                                 ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;
  ImGui::Begin("vktune dashboard", nullptr, flags);
  const float spacing = ImGui::GetStyle().ItemSpacing.y;
  ImVec2 available = ImGui::GetContentRegionAvail();
  // Rows: 45% run + loss, 27% learning rate + memory, the rest throughput. Below ~600 px the
  // rows keep a minimum height and the window scrolls instead.
  float height = std::max(available.y, 560.0f) - 2 * spacing;
  float top = std::floor(height * 0.45f), middle = std::floor(height * 0.27f), bottom = height - top - middle;
  float width = available.x;
  float run_width = std::clamp(width * 0.28f, 280.0f, 460.0f);

  panel("run_panel", ImVec2(run_width, top), [&] { draw_run_panel(snapshot, state.run, controls); });
  ImGui::SameLine();
  if (has_objective_metrics(snapshot)) {  // preference rewards or distillation parts beside the loss
    panel("loss_panel", ImVec2(std::floor((width - run_width) * 0.5f), top),
          [&] { draw_loss_panel(snapshot, state.loss); });
    ImGui::SameLine();
    panel("objective_panel", ImVec2(0, top), [&] { draw_objective_panel(snapshot, state.objective); });
  } else {
    panel("loss_panel", ImVec2(0, top), [&] { draw_loss_panel(snapshot, state.loss); });
  }

  panel("learning_rate_panel", ImVec2(std::floor(width * 0.5f), middle),
        [&] { draw_learning_rate_panel(snapshot, state.learning_rate); });
  ImGui::SameLine();
  panel("memory_panel", ImVec2(0, middle), [&] { draw_memory_panel(snapshot, state.memory); });

  panel("throughput_panel", ImVec2(0, bottom), [&] { draw_throughput_panel(snapshot, state.throughput); });
  ImGui::End();
}

}  // namespace vkt::ui
