#include "ui/offscreen.hpp"

#include <imgui.h>
#include <imgui_impl_vulkan.h>
#include <stb_image_write.h>

#include <string>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/vk/check.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

namespace {

// Makes an ImGui context current for a scope (ImGui's current context is process-global).
class CurrentContext {
 public:
  explicit CurrentContext(ImGuiContext* context) : previous_(ImGui::GetCurrentContext()) {
    ImGui::SetCurrentContext(context);
  }
  ~CurrentContext() { ImGui::SetCurrentContext(previous_); }

 private:
  ImGuiContext* previous_;
};

}  // namespace

// Every Vulkan and ImGui object of the renderer; release() frees what was made, so an exception
// half way through the constructor leaves nothing behind.
class OffscreenRenderer::Impl {
 public:
  static constexpr VkFormat format = VK_FORMAT_R8G8B8A8_UNORM;

  Impl(uint32_t width, uint32_t height) : width_(width), height_(height) {
    try {
      create();
    } catch (...) {
      release();  // a destructor does not run for a constructor that throws
      throw;
    }
  }

  ~Impl() { release(); }

  void create() {
    const uint32_t width = width_, height = height_;
    graphics_.create_device();
    VkDevice device = graphics_.device();
    VkImageCreateInfo image_info{VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO};
    image_info.imageType = VK_IMAGE_TYPE_2D;
    image_info.format = format;
    image_info.extent = {width, height, 1};
    image_info.mipLevels = 1;
    image_info.arrayLayers = 1;
    image_info.samples = VK_SAMPLE_COUNT_1_BIT;
    image_info.tiling = VK_IMAGE_TILING_OPTIMAL;
    image_info.usage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT;
    image_info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    image_info.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    VK_CHECK(vkCreateImage(device, &image_info, nullptr, &image_));
    VkMemoryRequirements requirements;
    vkGetImageMemoryRequirements(device, image_, &requirements);
    image_memory_ = graphics_.allocate_memory(requirements, {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT});
    VK_CHECK(vkBindImageMemory(device, image_, image_memory_, 0));
    VkImageViewCreateInfo view_info{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
    view_info.image = image_;
    view_info.viewType = VK_IMAGE_VIEW_TYPE_2D;
    view_info.format = format;
    view_info.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    VK_CHECK(vkCreateImageView(device, &view_info, nullptr, &view_));

    // Left in TRANSFER_SRC for the readback copy.
    render_pass_ = create_color_render_pass(device, format, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, true);
    VkFramebufferCreateInfo framebuffer_info{VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO};
    framebuffer_info.renderPass = render_pass_;
    framebuffer_info.attachmentCount = 1;
    framebuffer_info.pAttachments = &view_;
    framebuffer_info.width = width;
    framebuffer_info.height = height;
    framebuffer_info.layers = 1;
    VK_CHECK(vkCreateFramebuffer(device, &framebuffer_info, nullptr, &framebuffer_));
    readback_.create(graphics_, VkDeviceSize(width) * height * 4);

    ImGuiContext* previous = ImGui::GetCurrentContext();
    context_ = ImGui::CreateContext();  // also makes it current when there was none
    ImGui::SetCurrentContext(previous);
    CurrentContext current(context_);
    setup_imgui_context();
    ImGuiIO& io = ImGui::GetIO();
    io.DisplaySize = ImVec2(static_cast<float>(width), static_cast<float>(height));
    io.DeltaTime = 1.0f / 30;
    init_imgui_vulkan(graphics_, render_pass_, 2, 2);
    backend_ready_ = true;
  }

  void release() {
    if (graphics_.device()) vkDeviceWaitIdle(graphics_.device());
    if (backend_ready_) {
      CurrentContext current(context_);
      ImGui_ImplVulkan_Shutdown();
    }
    backend_ready_ = false;
    if (context_) ImGui::DestroyContext(context_);
    context_ = nullptr;
    VkDevice device = graphics_.device();
    if (!device) return;
    readback_.destroy(device);
    if (framebuffer_) vkDestroyFramebuffer(device, framebuffer_, nullptr);
    if (render_pass_) vkDestroyRenderPass(device, render_pass_, nullptr);
    if (view_) vkDestroyImageView(device, view_, nullptr);
    if (image_) vkDestroyImage(device, image_, nullptr);
    if (image_memory_) vkFreeMemory(device, image_memory_, nullptr);
    framebuffer_ = VK_NULL_HANDLE;
    render_pass_ = VK_NULL_HANDLE;
    view_ = VK_NULL_HANDLE;
    image_ = VK_NULL_HANDLE;
    image_memory_ = VK_NULL_HANDLE;
  }

  RgbaImage render(const std::function<void()>& draw) {
    CurrentContext current(context_);
    // Tables and child windows settle their sizes over the first frames (ImGui measures, then
    // lays out), so draw a few and keep the last.
    for (int frame = 0; frame < 3; frame++) {
      ImGui_ImplVulkan_NewFrame();
      ImGui::NewFrame();
      draw();
      ImGui::Render();
    }
    ImDrawData* draw_data = ImGui::GetDrawData();
    graphics_.submit_once([&](VkCommandBuffer command_buffer) {
      VkClearValue clear;
      ImVec4 background = ImGui::ColorConvertU32ToFloat4(colors::background);
      clear.color = {{background.x, background.y, background.z, 1.0f}};
      VkRenderPassBeginInfo begin{VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO};
      begin.renderPass = render_pass_;
      begin.framebuffer = framebuffer_;
      begin.renderArea.extent = {width_, height_};
      begin.clearValueCount = 1;
      begin.pClearValues = &clear;
      vkCmdBeginRenderPass(command_buffer, &begin, VK_SUBPASS_CONTENTS_INLINE);
      ImGui_ImplVulkan_RenderDrawData(draw_data, command_buffer);
      vkCmdEndRenderPass(command_buffer);
      record_image_readback(command_buffer, image_, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, width_, height_,
                            readback_.buffer);
    });
    return image_from_readback(readback_.mapped, width_, height_, format);
  }

 private:
  uint32_t width_, height_;
  GraphicsContext graphics_;
  VkImage image_ = VK_NULL_HANDLE;
  VkDeviceMemory image_memory_ = VK_NULL_HANDLE;
  VkImageView view_ = VK_NULL_HANDLE;
  VkRenderPass render_pass_ = VK_NULL_HANDLE;
  VkFramebuffer framebuffer_ = VK_NULL_HANDLE;
  ReadbackBuffer readback_;
  ImGuiContext* context_ = nullptr;
  bool backend_ready_ = false;
};

OffscreenRenderer::OffscreenRenderer(int width, int height) {
  if (width < 320 || height < 240 || width > 8192 || height > 8192)
    throw UserError("dashboard image size " + std::to_string(width) + "x" + std::to_string(height) + " is out of range",
                    "use --width and --height between 320x240 and 8192x8192");
  impl_ = std::make_unique<Impl>(static_cast<uint32_t>(width), static_cast<uint32_t>(height));
}

OffscreenRenderer::~OffscreenRenderer() = default;

RgbaImage OffscreenRenderer::render(const train::RunSnapshot& snapshot, DashboardState* state) {
  DashboardState local;
  DashboardState& used = state ? *state : local;
  return impl_->render([&] { draw_dashboard(snapshot, used, nullptr); });
}

RgbaImage OffscreenRenderer::render(const std::function<void()>& draw) { return impl_->render(draw); }

void render_png(const std::function<void()>& draw, const std::filesystem::path& png, int width, int height) {
  write_png(png, OffscreenRenderer(width, height).render(draw));
}

RgbaImage render_dashboard_image(const train::RunSnapshot& snapshot, int width, int height, DashboardState* state) {
  return OffscreenRenderer(width, height).render(snapshot, state);
}

void write_png(const std::filesystem::path& png, const RgbaImage& image) {
  std::string encoded;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(append, &encoded, image.width, image.height, 4, image.pixels.data(), image.width * 4))
    throw UserError("could not encode the dashboard as PNG for " + png.string());
  if (png.has_parent_path() && !std::filesystem::exists(png.parent_path()))
    throw UserError("cannot write " + png.string() + ": the folder " + png.parent_path().string() + " does not exist",
                    "create it first or choose another path");
  write_file_atomically(png, encoded);
}

void render_dashboard_png(const train::RunSnapshot& snapshot, const std::filesystem::path& png, int width, int height,
                          DashboardState* state) {
  write_png(png, render_dashboard_image(snapshot, width, height, state));
}

}  // namespace vkt::ui
