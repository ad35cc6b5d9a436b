#include "ui/window.hpp"

#define GLFW_INCLUDE_NONE
#define GLFW_INCLUDE_VULKAN
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_vulkan.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>

#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/vk/check.hpp"
#include "ui/graphics.hpp"
#include "ui/offscreen.hpp"
#include "ui/style.hpp"
#include "ui/swapchain.hpp"

namespace vkt::ui {

namespace {

std::string last_glfw_error;
void glfw_error(int, const char* description) {
  last_glfw_error = description ? description : "";
  log::debug(std::string("glfw: ") + last_glfw_error);
}

GLFWwindow* open_window = nullptr;  // the window of the run_dashboard_window call in progress

// When the user last did something in the window: frames are drawn only for a short while
// after input (hover highlights, slider drags) or when the metrics change.
double last_input_time = 0;
void mark_input() { last_input_time = glfwGetTime(); }
void install_input_callbacks(GLFWwindow* window) {
  // Installed before ImGui's GLFW backend, which calls them after its own handlers.
  glfwSetCursorPosCallback(window, [](GLFWwindow*, double, double) { mark_input(); });
  glfwSetMouseButtonCallback(window, [](GLFWwindow*, int, int, int) { mark_input(); });
  glfwSetScrollCallback(window, [](GLFWwindow*, double, double) { mark_input(); });
  glfwSetKeyCallback(window, [](GLFWwindow*, int, int, int, int) { mark_input(); });
  glfwSetCharCallback(window, [](GLFWwindow*, unsigned int) { mark_input(); });
  glfwSetWindowFocusCallback(window, [](GLFWwindow*, int) { mark_input(); });
  glfwSetCursorEnterCallback(window, [](GLFWwindow*, int) { mark_input(); });
  glfwSetFramebufferSizeCallback(window, [](GLFWwindow*, int, int) { mark_input(); });
  glfwSetWindowRefreshCallback(window, [](GLFWwindow*) { mark_input(); });
}

bool run_has_ended(train::RunState state) {
  return state == train::RunState::finished || state == train::RunState::stopped || state == train::RunState::failed;
}

// GLFW, the window, the Vulkan objects and the ImGui context of one run_dashboard_window call,
// released in reverse order however the call ends.
struct WindowSession {
  bool glfw_ready = false;
  GLFWwindow* window = nullptr;
  std::unique_ptr<GraphicsContext> graphics;
  VkSurfaceKHR surface = VK_NULL_HANDLE;
  std::unique_ptr<Swapchain> swapchain;
  ImGuiContext* previous_context = ImGui::GetCurrentContext();
  ImGuiContext* context = nullptr;
  bool glfw_backend = false, vulkan_backend = false;

  ~WindowSession() {
    if (open_window == window) open_window = nullptr;
    if (graphics && graphics->device()) vkDeviceWaitIdle(graphics->device());
    if (vulkan_backend) ImGui_ImplVulkan_Shutdown();
    if (glfw_backend) ImGui_ImplGlfw_Shutdown();
    if (context) {
      ImGui::DestroyContext(context);
      ImGui::SetCurrentContext(previous_context);
    }
    swapchain.reset();
    if (surface) vkDestroySurfaceKHR(graphics->instance(), surface, nullptr);
    graphics.reset();
    if (window) glfwDestroyWindow(window);
    if (glfw_ready) glfwTerminate();
  }
};

}  // namespace

const char* window_result_name(WindowResult result) {
  switch (result) {
    case WindowResult::closed:
      return "closed";
    case WindowResult::stop_requested:
      return "stop_requested";
    case WindowResult::run_ended:
      return "run_ended";
    case WindowResult::frame_limit:
      return "frame_limit";
  }
  return "?";
}

void request_window_close() {
  if (open_window) glfwSetWindowShouldClose(open_window, GLFW_TRUE);
}

bool display_available() {
  const char* x11 = std::getenv("DISPLAY");
  const char* wayland = std::getenv("WAYLAND_DISPLAY");
  if (!(x11 && *x11) && !(wayland && *wayland)) return false;
  glfwSetErrorCallback(glfw_error);
  if (!glfwInit()) return false;
  bool vulkan = glfwVulkanSupported() == GLFW_TRUE;
  glfwTerminate();
  return vulkan;
}

WindowResult run_dashboard_window(train::RunMonitor& monitor, const WindowOptions& options) {
  WindowSession session;
  glfwSetErrorCallback(glfw_error);
  const char* no_display_hint =
      "run on a machine with a display (or set DISPLAY), or render a picture instead: "
      "`vktune dashboard RUN_DIR --png dashboard.png`";
  if (!glfwInit()) throw UserError("cannot open the dashboard window: " + last_glfw_error, no_display_hint);
  session.glfw_ready = true;
  if (!glfwVulkanSupported())
    throw UserError("cannot open the dashboard window: GLFW finds no Vulkan loader with window-system support",
                    no_display_hint);
  glfwWindowHint(GLFW_CLIENT_API, GLFW_NO_API);
  session.window = glfwCreateWindow(options.width, options.height, options.title.c_str(), nullptr, nullptr);
  if (!session.window) throw UserError("cannot open the dashboard window: " + last_glfw_error, no_display_hint);
  glfwSetWindowSizeLimits(session.window, 640, 480, GLFW_DONT_CARE, GLFW_DONT_CARE);
  open_window = session.window;
  install_input_callbacks(session.window);

  uint32_t extension_count = 0;
  const char** glfw_extensions = glfwGetRequiredInstanceExtensions(&extension_count);
  session.graphics =
      std::make_unique<GraphicsContext>(std::vector<const char*>(glfw_extensions, glfw_extensions + extension_count));
  VK_CHECK(glfwCreateWindowSurface(session.graphics->instance(), session.window, nullptr, &session.surface));
  session.graphics->create_device(session.surface);
  log::debug("dashboard window on " + session.graphics->device_name());
  session.swapchain = std::make_unique<Swapchain>(*session.graphics, session.surface);
  int framebuffer_width = 0, framebuffer_height = 0;
  glfwGetFramebufferSize(session.window, &framebuffer_width, &framebuffer_height);
  bool rebuild_needed = !session.swapchain->rebuild(framebuffer_width, framebuffer_height);

  session.context = ImGui::CreateContext();
  ImGui::SetCurrentContext(session.context);
  setup_imgui_context();
  ImGui_ImplGlfw_InitForVulkan(session.window, true);
  session.glfw_backend = true;
  init_imgui_vulkan(*session.graphics, session.swapchain->render_pass(), session.swapchain->min_image_count(),
                    std::max(session.swapchain->image_count(), session.swapchain->min_image_count()));
  session.vulkan_backend = true;

  DashboardState local_state;
  DashboardState& state = options.state ? *options.state : local_state;
  train::RunSnapshot snapshot = monitor.snapshot();
  uint64_t drawn_version = ~0ull;
  int frames_drawn = 0;
  bool close_prompt = false;
  std::optional<WindowResult> result;
  std::optional<RgbaImage> captured;
  const double frame_interval = 1.0 / std::max(1.0, options.max_frames_per_second);
  double next_frame_time = 0;
  uint32_t min_image_count = session.swapchain->min_image_count();
  last_input_time = glfwGetTime();
  auto need_frame = [&](double now) {
    return frames_drawn < 3 || options.before_frame || rebuild_needed || close_prompt || now - last_input_time < 0.5 ||
           monitor.version() != drawn_version;
  };

  while (!result) {
    double now = glfwGetTime();
    if (need_frame(now)) {
      double wait = next_frame_time - now;
      if (wait > 0.001)
        glfwWaitEventsTimeout(wait);
      else
        glfwPollEvents();
    } else {
      glfwWaitEventsTimeout(0.25);
    }
    if (options.poll) options.poll();
    if (monitor.version() != snapshot.version) snapshot = monitor.snapshot();

    if (options.close_when_run_ends && run_has_ended(snapshot.state)) {
      result = WindowResult::run_ended;
      break;
    }
    if (glfwWindowShouldClose(session.window)) {
      // Only a window that controls an active run asks; otherwise closing just closes.
      bool ask = !options.read_only && run_is_active(snapshot.state) && !monitor.stop_requested.load();
      if (!ask) {
        result = WindowResult::closed;
        break;
      }
      glfwSetWindowShouldClose(session.window, GLFW_FALSE);
      close_prompt = true;
    }
    if (glfwGetWindowAttrib(session.window, GLFW_ICONIFIED)) {  // asleep while minimised
      glfwWaitEventsTimeout(0.1);
      continue;
    }
    now = glfwGetTime();
    if (!need_frame(now) || now < next_frame_time - 0.001) continue;

    glfwGetFramebufferSize(session.window, &framebuffer_width, &framebuffer_height);
    VkExtent2D extent = session.swapchain->extent();
    if (static_cast<uint32_t>(framebuffer_width) != extent.width ||
        static_cast<uint32_t>(framebuffer_height) != extent.height)
      rebuild_needed = true;
    if (rebuild_needed) {
      if (framebuffer_width <= 0 || framebuffer_height <= 0 ||
          !session.swapchain->rebuild(framebuffer_width, framebuffer_height)) {
        glfwWaitEventsTimeout(0.1);
        continue;
      }
      if (session.swapchain->min_image_count() != min_image_count) {
        min_image_count = session.swapchain->min_image_count();
        ImGui_ImplVulkan_SetMinImageCount(min_image_count);
      }
      rebuild_needed = false;
    }

    next_frame_time = now + frame_interval;
    if (options.before_frame) {
      options.before_frame(frames_drawn);
      if (monitor.version() != snapshot.version) snapshot = monitor.snapshot();
    }
    ImGui_ImplVulkan_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    ImGui::NewFrame();
    if (options.draw)
      options.draw();
    else
      draw_dashboard(snapshot, state, options.read_only ? nullptr : &monitor);
    const char* close_title = "Close the dashboard?";
    if (close_prompt && !ImGui::IsPopupOpen(close_title)) ImGui::OpenPopup(close_title);
    ImGui::SetNextWindowPos(ImGui::GetMainViewport()->GetCenter(), ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
    if (ImGui::BeginPopupModal(close_title, nullptr,
                               ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings)) {
      ImGui::TextUnformatted("Training is still running.");
      ImGui::TextDisabled(
          "Stop: the trainer saves a checkpoint, then stops.\n"
          "Keep training: the window closes, training goes on in the terminal.");
      if (ImGui::Button("Stop training")) {
        monitor.stop_requested.store(true);
        result = WindowResult::stop_requested;
      }
      ImGui::SameLine();
      if (ImGui::Button("Keep training")) result = WindowResult::closed;
      ImGui::SameLine();
      if (ImGui::Button("Cancel") || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) {
        close_prompt = false;
        ImGui::CloseCurrentPopup();
      }
      ImGui::EndPopup();
    }
    ImGui::Render();
    ImDrawData* draw_data = ImGui::GetDrawData();
    bool minimized = draw_data->DisplaySize.x <= 0 || draw_data->DisplaySize.y <= 0;
    if (!minimized) {
      bool capture = !options.screenshot_png.empty();
      session.swapchain->render(draw_data, capture, captured, rebuild_needed);
    }
    drawn_version = snapshot.version;
    frames_drawn++;
    if (options.max_frames > 0 && frames_drawn >= options.max_frames && !result) result = WindowResult::frame_limit;
  }

  if (!options.screenshot_png.empty()) {
    if (captured)
      write_png(options.screenshot_png, *captured);
    else
      log::warn("no dashboard frame could be read back from the window for " + options.screenshot_png.string());
  }
  return *result;
}

}  // namespace vkt::ui
