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

// The swapchain and everything sized by it: image views, framebuffers, one command buffer and one
// "render complete" semaphore per image (a semaphore may be reused only once the presentation
// that waited on it is done, which is when its image is acquired again). One frame in flight:
// each frame waits for the previous one, so ImGui's vertex buffers are never overwritten in use.
class Swapchain {
 public:
  Swapchain(GraphicsContext& graphics, VkSurfaceKHR surface) : graphics_(graphics), surface_(surface) {
    VkPhysicalDevice physical = graphics.physical_device();
    uint32_t count = 0;
    vkGetPhysicalDeviceSurfaceFormatsKHR(physical, surface, &count, nullptr);
    std::vector<VkSurfaceFormatKHR> formats(count);
    vkGetPhysicalDeviceSurfaceFormatsKHR(physical, surface, &count, formats.data());
    if (formats.empty()) throw vk::VulkanError(VK_ERROR_FORMAT_NOT_SUPPORTED, "the window surface offers no format");
    // UNORM formats, as ImGui's colours are meant to be written unconverted.
    format_ = formats[0];
    bool found = false;
    for (VkFormat wanted : {VK_FORMAT_B8G8R8A8_UNORM, VK_FORMAT_R8G8B8A8_UNORM})
      for (const auto& f : formats)
        if (!found && f.format == wanted && f.colorSpace == VK_COLOR_SPACE_SRGB_NONLINEAR_KHR) {
          format_ = f;
          found = true;
        }
    VkDevice device = graphics.device();
    render_pass_ = create_color_render_pass(device, format_.format, VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, false);
    VkSemaphoreCreateInfo semaphore_info{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    VK_CHECK(vkCreateSemaphore(device, &semaphore_info, nullptr, &image_acquired_));
    VkFenceCreateInfo fence_info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    fence_info.flags = VK_FENCE_CREATE_SIGNALED_BIT;  // "the previous frame" is done before the first
    VK_CHECK(vkCreateFence(device, &fence_info, nullptr, &in_flight_));
  }

  ~Swapchain() {
    VkDevice device = graphics_.device();
    vkDeviceWaitIdle(device);
    destroy_images();
    if (swapchain_) vkDestroySwapchainKHR(device, swapchain_, nullptr);
    readback_.destroy(device);
    vkDestroyFence(device, in_flight_, nullptr);
    vkDestroySemaphore(device, image_acquired_, nullptr);
    vkDestroyRenderPass(device, render_pass_, nullptr);
  }

  VkRenderPass render_pass() const { return render_pass_; }
  uint32_t min_image_count() const { return min_image_count_; }
  uint32_t image_count() const { return static_cast<uint32_t>(images_.size()); }
  VkExtent2D extent() const { return extent_; }
  bool can_capture() const { return can_capture_; }

  // (Re)creates the swapchain for a framebuffer of width x height; false when that is empty
  // (minimised).
  bool rebuild(int width, int height) {
    VkDevice device = graphics_.device();
    vkDeviceWaitIdle(device);
    VkSurfaceCapabilitiesKHR caps;
    VK_CHECK(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(graphics_.physical_device(), surface_, &caps));
    VkExtent2D extent = caps.currentExtent;
    if (extent.width == 0xFFFFFFFFu) {  // the surface takes the swapchain's size
      extent.width = std::clamp(static_cast<uint32_t>(std::max(width, 0)), caps.minImageExtent.width, caps.maxImageExtent.width);
      extent.height = std::clamp(static_cast<uint32_t>(std::max(height, 0)), caps.minImageExtent.height, caps.maxImageExtent.height);
    }
    if (extent.width == 0 || extent.height == 0) return false;
    min_image_count_ = std::max(2u, caps.minImageCount + 1);
    if (caps.maxImageCount) min_image_count_ = std::min(min_image_count_, caps.maxImageCount);
    can_capture_ = caps.supportedUsageFlags & VK_IMAGE_USAGE_TRANSFER_SRC_BIT;
    VkSwapchainCreateInfoKHR info{VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR};
    info.surface = surface_;
    info.minImageCount = min_image_count_;
    info.imageFormat = format_.format;
    info.imageColorSpace = format_.colorSpace;
    info.imageExtent = extent;
    info.imageArrayLayers = 1;
    info.imageUsage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | (can_capture_ ? VK_IMAGE_USAGE_TRANSFER_SRC_BIT : 0);
    info.imageSharingMode = VK_SHARING_MODE_EXCLUSIVE;
    info.preTransform = (caps.supportedTransforms & VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR)
                            ? VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR
                            : caps.currentTransform;
    info.compositeAlpha = VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR;
    for (VkCompositeAlphaFlagBitsKHR alpha : {VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR, VK_COMPOSITE_ALPHA_INHERIT_BIT_KHR,
                                              VK_COMPOSITE_ALPHA_PRE_MULTIPLIED_BIT_KHR, VK_COMPOSITE_ALPHA_POST_MULTIPLIED_BIT_KHR})
      if (caps.supportedCompositeAlpha & alpha) {
        info.compositeAlpha = alpha;
        break;
      }
    info.presentMode = VK_PRESENT_MODE_FIFO_KHR;  // vsync; always supported
    info.clipped = VK_TRUE;
    info.oldSwapchain = swapchain_;
    VkSwapchainKHR created = VK_NULL_HANDLE;
    VK_CHECK(vkCreateSwapchainKHR(device, &info, nullptr, &created));
    destroy_images();
    if (swapchain_) vkDestroySwapchainKHR(device, swapchain_, nullptr);
    swapchain_ = created;
    extent_ = extent;

    uint32_t count = 0;
    VK_CHECK(vkGetSwapchainImagesKHR(device, swapchain_, &count, nullptr));
    images_.resize(count);
    VK_CHECK(vkGetSwapchainImagesKHR(device, swapchain_, &count, images_.data()));
    for (VkImage image : images_) {
      VkImageViewCreateInfo view_info{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
      view_info.image = image;
      view_info.viewType = VK_IMAGE_VIEW_TYPE_2D;
      view_info.format = format_.format;
      view_info.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
      VkImageView view = VK_NULL_HANDLE;
      VK_CHECK(vkCreateImageView(device, &view_info, nullptr, &view));
      views_.push_back(view);
      VkFramebufferCreateInfo framebuffer_info{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
      framebuffer_info.renderPass = render_pass_;
      framebuffer_info.attachmentCount = 1;
      framebuffer_info.pAttachments = &view;
      framebuffer_info.width = extent.width;
      framebuffer_info.height = extent.height;
      framebuffer_info.layers = 1;
      VkFramebuffer framebuffer = VK_NULL_HANDLE;
      VK_CHECK(vkCreateFramebuffer(device, &framebuffer_info, nullptr, &framebuffer));
      framebuffers_.push_back(framebuffer);
      VkSemaphoreCreateInfo semaphore_info{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
      VkSemaphore semaphore = VK_NULL_HANDLE;
      VK_CHECK(vkCreateSemaphore(device, &semaphore_info, nullptr, &semaphore));
      render_complete_.push_back(semaphore);
    }
    command_buffers_.resize(count);
    VkCommandBufferAllocateInfo allocate{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    allocate.commandPool = graphics_.command_pool();
    allocate.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    allocate.commandBufferCount = count;
    VK_CHECK(vkAllocateCommandBuffers(device, &allocate, command_buffers_.data()));
    return true;
  }

  enum class FrameResult { presented, out_of_date };

  // Draws `draw_data` into the next swapchain image and presents it. With `capture`, the image is
  // also copied back before presenting and returned in `captured`.
  FrameResult render(ImDrawData* draw_data, bool capture, std::optional<RgbaImage>& captured, bool& rebuild_needed) {
    VkDevice device = graphics_.device();
    VK_CHECK(vkWaitForFences(device, 1, &in_flight_, VK_TRUE, UINT64_MAX));
    uint32_t index = 0;
    VkResult result = vkAcquireNextImageKHR(device, swapchain_, UINT64_MAX, image_acquired_, VK_NULL_HANDLE, &index);
    if (result == VK_ERROR_OUT_OF_DATE_KHR) {
      rebuild_needed = true;
      return FrameResult::out_of_date;
    }
    // VK_SUBOPTIMAL_KHR: the image is ours and the semaphore will signal, so draw and present it,
    // then rebuild (returning without using it would leave the semaphore pending).
    if (result == VK_SUBOPTIMAL_KHR) rebuild_needed = true;
    else VK_CHECK(result);
    capture = capture && can_capture_;
    if (capture && readback_.bytes != VkDeviceSize(extent_.width) * extent_.height * 4) {
      readback_.destroy(device);
      readback_.create(graphics_, VkDeviceSize(extent_.width) * extent_.height * 4);
    }

    VkCommandBuffer command_buffer = command_buffers_[index];
    VK_CHECK(vkResetCommandBuffer(command_buffer, 0));
    VkCommandBufferBeginInfo begin{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    VK_CHECK(vkBeginCommandBuffer(command_buffer, &begin));
    VkClearValue clear;
    ImVec4 background = ImGui::ColorConvertU32ToFloat4(colors::background);
    clear.color = {{background.x, background.y, background.z, 1.0f}};
    VkRenderPassBeginInfo pass{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
    pass.renderPass = render_pass_;
    pass.framebuffer = framebuffers_[index];
    pass.renderArea.extent = extent_;
    pass.clearValueCount = 1;
    pass.pClearValues = &clear;
    vkCmdBeginRenderPass(command_buffer, &pass, VK_SUBPASS_CONTENTS_INLINE);
    ImGui_ImplVulkan_RenderDrawData(draw_data, command_buffer);
    vkCmdEndRenderPass(command_buffer);
    if (capture)
      record_image_readback(command_buffer, images_[index], VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, extent_.width,
                            extent_.height, readback_.buffer);
    VK_CHECK(vkEndCommandBuffer(command_buffer));

    VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
    VkSubmitInfo submit{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    submit.waitSemaphoreCount = 1;
    submit.pWaitSemaphores = &image_acquired_;
    submit.pWaitDstStageMask = &wait_stage;
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &command_buffer;
    submit.signalSemaphoreCount = 1;
    submit.pSignalSemaphores = &render_complete_[index];
    VK_CHECK(vkResetFences(device, 1, &in_flight_));
    VK_CHECK(vkQueueSubmit(graphics_.queue(), 1, &submit, in_flight_));

    VkPresentInfoKHR present{VK_STRUCTURE_TYPE_PRESENT_INFO_KHR};
    present.waitSemaphoreCount = 1;
    present.pWaitSemaphores = &render_complete_[index];
    present.swapchainCount = 1;
    present.pSwapchains = &swapchain_;
    present.pImageIndices = &index;
    result = vkQueuePresentKHR(graphics_.queue(), &present);
    if (result == VK_ERROR_OUT_OF_DATE_KHR || result == VK_SUBOPTIMAL_KHR) rebuild_needed = true;
    else VK_CHECK(result);
    if (capture) {
      VK_CHECK(vkWaitForFences(device, 1, &in_flight_, VK_TRUE, UINT64_MAX));
      captured = image_from_readback(readback_.mapped, extent_.width, extent_.height, format_.format);
    }
    return FrameResult::presented;
  }

 private:
  void destroy_images() {
    VkDevice device = graphics_.device();
    if (!command_buffers_.empty())
      vkFreeCommandBuffers(device, graphics_.command_pool(), static_cast<uint32_t>(command_buffers_.size()),
                           command_buffers_.data());
    command_buffers_.clear();
    for (VkSemaphore s : render_complete_) vkDestroySemaphore(device, s, nullptr);
    for (VkFramebuffer f : framebuffers_) vkDestroyFramebuffer(device, f, nullptr);
    for (VkImageView v : views_) vkDestroyImageView(device, v, nullptr);
    render_complete_.clear();
    framebuffers_.clear();
    views_.clear();
    images_.clear();
  }

  GraphicsContext& graphics_;
  VkSurfaceKHR surface_;
  VkSurfaceFormatKHR format_{};
  VkRenderPass render_pass_ = VK_NULL_HANDLE;
  VkSwapchainKHR swapchain_ = VK_NULL_HANDLE;
  VkExtent2D extent_{};
  uint32_t min_image_count_ = 2;
  bool can_capture_ = false;
  std::vector<VkImage> images_;
  std::vector<VkImageView> views_;
  std::vector<VkFramebuffer> framebuffers_;
  std::vector<VkCommandBuffer> command_buffers_;
  std::vector<VkSemaphore> render_complete_;
  VkSemaphore image_acquired_ = VK_NULL_HANDLE;
  VkFence in_flight_ = VK_NULL_HANDLE;
  ReadbackBuffer readback_;
};

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
    case WindowResult::closed: return "closed";
    case WindowResult::stop_requested: return "stop_requested";
    case WindowResult::run_ended: return "run_ended";
    case WindowResult::frame_limit: return "frame_limit";
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
  session.graphics = std::make_unique<GraphicsContext>(std::vector<const char*>(glfw_extensions, glfw_extensions + extension_count));
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
      if (wait > 0.001) glfwWaitEventsTimeout(wait);
      else glfwPollEvents();
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
    if (static_cast<uint32_t>(framebuffer_width) != extent.width || static_cast<uint32_t>(framebuffer_height) != extent.height)
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
    draw_dashboard(snapshot, state, options.read_only ? nullptr : &monitor);
    const char* close_title = "Close the dashboard?";
    if (close_prompt && !ImGui::IsPopupOpen(close_title)) ImGui::OpenPopup(close_title);
    ImGui::SetNextWindowPos(ImGui::GetMainViewport()->GetCenter(), ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
    if (ImGui::BeginPopupModal(close_title, nullptr, ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings)) {
      ImGui::TextUnformatted("Training is still running.");
      ImGui::TextDisabled("Stop: the trainer saves a checkpoint, then stops.\n"
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
    if (captured) write_png(options.screenshot_png, *captured);
    else log::warn("no dashboard frame could be read back from the window for " + options.screenshot_png.string());
  }
  return *result;
}

}  // namespace vkt::ui
