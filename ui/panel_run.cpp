// The run panel: state, the method (--method / --peft-type / --objective) and its trainable
// parameters by kind, progress with ETA, the latest numbers, the controls (pause/resume, save
// a checkpoint now, stop) and the configuration and device the run uses.
#include <imgui.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/train/config.hpp"
#include "ui/panels.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

bool run_is_active(train::RunState state) {
  using S = train::RunState;
  return state == S::starting || state == S::running || state == S::paused || state == S::saving ||
         state == S::evaluating;
}

double estimate_remaining_seconds(const train::RunSnapshot& snapshot) {
  int64_t max_steps = snapshot.info.max_steps, current = snapshot.current_step;
  if (max_steps <= 0 || current <= 0) return NAN;
  if (current >= max_steps) return 0;
  // The recent pace: from the logged step ~10 entries back to the latest one. Early steps
  // (pipeline creation, warm caches) are slower, so the whole-run average overestimates.
  double seconds_per_step = NAN;
  const auto& steps = snapshot.steps;
  if (steps.size() >= 2) {
    const auto& last = steps.back();
    const auto& first = steps[steps.size() - std::min<size_t>(steps.size(), 11)];
    if (last.step > first.step && last.elapsed_seconds > first.elapsed_seconds)
      seconds_per_step = (last.elapsed_seconds - first.elapsed_seconds) / static_cast<double>(last.step - first.step);
  }
  if (!std::isfinite(seconds_per_step) && snapshot.current_elapsed > 0)
    seconds_per_step = snapshot.current_elapsed / static_cast<double>(current);
  if (!std::isfinite(seconds_per_step)) return NAN;
  return seconds_per_step * static_cast<double>(max_steps - current);
}

namespace {

ImVec4 state_color(train::RunState state) {
  using S = train::RunState;
  switch (state) {
    case S::running:
      return ImVec4(0.4f, 0.9f, 0.45f, 1);
    case S::paused:
      return ImVec4(0.95f, 0.8f, 0.3f, 1);
    case S::saving:
    case S::evaluating:
    case S::starting:
      return ImVec4(0.45f, 0.75f, 1, 1);
    case S::finished:
      return ImVec4(0.75f, 0.75f, 0.8f, 1);
    case S::stopped:
      return ImVec4(0.95f, 0.6f, 0.3f, 1);
    case S::failed:
      return ImVec4(1, 0.35f, 0.35f, 1);
  }
  return ImVec4(1, 1, 1, 1);
}

std::string json_value_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>().empty() ? "\"\"" : value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  if (value.is_number_float()) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", value.get<double>());
    return text;
  }
  return value.dump();
}

// The configuration as a two-column table: options changed from their defaults first, in full
// brightness, then the defaults, dimmed.
void draw_configuration(const train::RunInfo& info) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(info.config_json.empty() ? "{}" : info.config_json);
  } catch (const nlohmann::json::exception&) {
    ImGui::TextWrapped("%s", info.config_json.c_str());
    return;
  }
  if (!config.is_object() || config.empty()) {
    ImGui::TextDisabled("no configuration recorded");
    return;
  }
  static const nlohmann::json defaults = nlohmann::json::parse(train::to_json(train::TrainConfig{}));
  const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_SizingStretchProp;
  if (!ImGui::BeginTable("configuration", 2, flags, ImVec2(0, 0))) return;
  ImGui::TableSetupColumn("option", ImGuiTableColumnFlags_WidthStretch, 1.0f);
  ImGui::TableSetupColumn("value", ImGuiTableColumnFlags_WidthStretch, 1.3f);
  for (bool changed_pass : {true, false}) {
    for (const auto& [key, value] : config.items()) {
      bool is_default = defaults.contains(key) && defaults[key] == value;
      if (is_default == changed_pass) continue;
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      if (is_default)
        ImGui::TextDisabled("%s", key.c_str());
      else
        ImGui::TextUnformatted(key.c_str());
      ImGui::TableNextColumn();
      std::string text = json_value_text(value);
      if (is_default)
        ImGui::TextDisabled("%s", text.c_str());
      else
        ImGui::TextUnformatted(text.c_str());
      if (ImGui::IsItemHovered() && text.size() > 24) ImGui::SetTooltip("%s", text.c_str());
    }
  }
  ImGui::EndTable();
}

ImVec2 item_center() {
  ImVec2 min = ImGui::GetItemRectMin(), max = ImGui::GetItemRectMax();
  return ImVec2((min.x + max.x) * 0.5f, (min.y + max.y) * 0.5f);
}

void draw_controls(const train::RunSnapshot& snapshot, RunPanelState& state, train::RunMonitor* controls) {
  bool active = run_is_active(snapshot.state);
  ImGui::BeginDisabled(controls == nullptr || !active);
  bool pause_wanted = controls && controls->pause_requested.load();
  bool pause_clicked = ImGui::Button(pause_wanted ? "Resume" : "Pause");
  state.pause_button = item_center();
  if (pause_clicked && controls) controls->pause_requested.store(!pause_wanted);
  ImGui::SameLine();
  bool save_wanted = controls && controls->save_requested.load();
  bool save_clicked = ImGui::Button(save_wanted ? "Saving..." : "Save checkpoint");
  state.save_button = item_center();
  if (save_clicked && controls && !save_wanted) controls->save_requested.store(true);
  ImGui::SameLine();
  bool stop_wanted = controls && controls->stop_requested.load();
  ImGui::PushStyleColor(ImGuiCol_Button, ImVec4(0.55f, 0.18f, 0.18f, 1));
  ImGui::PushStyleColor(ImGuiCol_ButtonHovered, ImVec4(0.75f, 0.25f, 0.25f, 1));
  bool stop_clicked = ImGui::Button(stop_wanted ? "Stopping..." : "Stop");
  state.stop_button = item_center();
  if (stop_clicked && controls && !stop_wanted) {
    state.stop_confirm_open = true;
    ImGui::OpenPopup("Stop training?");
  }
  ImGui::PopStyleColor(2);
  ImGui::EndDisabled();
  if (!controls) {
    ImGui::SameLine();
    if (ImGui::GetContentRegionAvail().x < ImGui::CalcTextSize("(read-only)").x) ImGui::NewLine();
    ImGui::TextDisabled("(read-only)");
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("Following the run's files: the controls belong to `vktune train`");
  } else if (pause_wanted && snapshot.state == train::RunState::running) {
    ImGui::SameLine();
    ImGui::TextDisabled("pausing after this step");
  }
  if (ImGui::BeginPopupModal("Stop training?", nullptr, ImGuiWindowFlags_AlwaysAutoResize)) {
    ImGui::TextUnformatted("Stop after the current step? A checkpoint is saved first.");
    bool confirmed = ImGui::Button("Stop training", ImVec2(140, 0));
    state.stop_confirm_button = item_center();
    if (confirmed) {
      if (controls) controls->stop_requested.store(true);
      state.stop_confirm_open = false;
      ImGui::CloseCurrentPopup();
    }
    ImGui::SameLine();
    if (ImGui::Button("Cancel", ImVec2(100, 0))) {
      state.stop_confirm_open = false;
      ImGui::CloseCurrentPopup();
    }
    ImGui::EndPopup();
  }
}

}  // namespace

void draw_run_panel(const train::RunSnapshot& snapshot, RunPanelState& state, train::RunMonitor* controls) {
  const auto& info = snapshot.info;
  panel_title("Run");
  ImGui::SameLine();
  ImGui::TextColored(state_color(snapshot.state), "%s", train::run_state_name(snapshot.state));
  if (!info.started_at.empty()) {
    // "2026-11-23T16:42:00Z" -> "2026-11-23 16:42": the seconds and zone only take room.
    std::string started = info.started_at.substr(0, 16);
    if (started.size() > 10 && started[10] == 'T') started[10] = ' ';
    ImGui::SameLine();
    ImGui::TextDisabled("started %s", started.c_str());
  }
  if (!snapshot.status_message.empty()) ImGui::TextWrapped("%s", snapshot.status_message.c_str());
  // The method and what it trains: "qlora / dora / dpo", trainable 1.2M (LoRA A 0.6M, ...).
  state.method = method_label(info);
  if (!state.method.empty()) ImGui::Text("method %s", state.method.c_str());
  if (!info.trainable_parameters.empty()) {
    uint64_t total = 0;
    std::string kinds;
    for (const auto& [kind, count] : info.trainable_parameters) {
      total += count;
      kinds += (kinds.empty() ? "" : ", ") + kind + " " + format_tick(static_cast<double>(count), 1);
    }
    if (info.trainable_parameters.size() > 1)
      ImGui::TextWrapped("trainable %s (%s)", format_tick(static_cast<double>(total), 1).c_str(), kinds.c_str());
    else
      ImGui::TextWrapped("trainable %s", kinds.c_str());
  }

  // Progress with ETA.
  double fraction =
      info.max_steps > 0 ? std::clamp(double(snapshot.current_step) / double(info.max_steps), 0.0, 1.0) : 0.0;
  char overlay[96];
  if (info.max_steps > 0)
    std::snprintf(overlay, sizeof overlay, "step %lld / %lld (%.0f%%)", static_cast<long long>(snapshot.current_step),
                  static_cast<long long>(info.max_steps), 100 * fraction);
  else
    std::snprintf(overlay, sizeof overlay, "step %lld", static_cast<long long>(snapshot.current_step));
  ImGui::ProgressBar(static_cast<float>(fraction), ImVec2(-1, 0), overlay);
  double remaining = estimate_remaining_seconds(snapshot);
  ImGui::Text("elapsed %s", format_duration(snapshot.current_elapsed).c_str());
  if (run_is_active(snapshot.state) && std::isfinite(remaining)) {
    ImGui::SameLine();
    ImGui::Text("  ETA %s", format_duration(remaining).c_str());
  }

  if (!snapshot.steps.empty()) {
    const auto& last = snapshot.steps.back();
    ImGui::Text("loss %.4f   lr %.3g   grad norm %.3g", last.loss, last.learning_rate, last.grad_norm);
    if (info.loraplus_lr_ratio != 1) {  // LoRA+: the B matrices step at a multiple of the logged lr
      ImGui::SameLine();
      ImGui::Text("  LoRA+ B lr x%g", info.loraplus_lr_ratio);
    }
    ImGui::Text("epoch %.2f   %s tokens", last.epoch, format_tick(static_cast<double>(last.tokens), 1).c_str());
    if (last.loss_scale > 0)  // fp16: GradScaler's scale and the overflowed steps it skipped
      ImGui::Text("fp16 loss scale %g   skipped steps %lld", last.loss_scale,
                  static_cast<long long>(last.skipped_steps));
  }
  draw_controls(snapshot, state, controls);

  ImGui::Separator();
  if (!info.device.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.7f, 0.72f, 0.76f, 1));
    // The capability line is long: its first fields (name, type, driver, API) here, all of it on hover.
    std::string shown;
    size_t start = 0;
    for (int field = 0; field < 4 && start < info.device.size(); field++) {
      size_t end = info.device.find(" | ", start);
      shown +=
          (field ? " | " : "") + info.device.substr(start, end == std::string::npos ? std::string::npos : end - start);
      start = end == std::string::npos ? info.device.size() : end + 3;
    }
    ImGui::TextWrapped("%s%s", shown.c_str(), start < info.device.size() ? " | ..." : "");
    ImGui::PopStyleColor();
    if (ImGui::IsItemHovered()) {
      ImGui::BeginTooltip();
      ImGui::PushTextWrapPos(ImGui::GetFontSize() * 40);
      ImGui::TextUnformatted(info.device.c_str());
      ImGui::PopTextWrapPos();
      ImGui::EndTooltip();
    }
  }
  draw_configuration(info);
}

}  // namespace vkt::ui
