#pragma once
// The dashboard window's swapchain, on the dashboard's GraphicsContext.
#include <vulkan/vulkan.h>

#include <optional>
#include <vector>

#include "ui/graphics.hpp"

struct ImDrawData;

namespace vkt::ui {

// The swapchain and everything sized by it: image views, framebuffers, one command buffer and one
// "render complete" semaphore per image (a semaphore may be reused only once the presentation
// that waited on it is done, which is when its image is acquired again). One frame in flight:
// each frame waits for the previous one, so ImGui's vertex buffers are never overwritten in use.
class Swapchain {
 public:
  Swapchain(GraphicsContext& graphics, VkSurfaceKHR surface);
  ~Swapchain();
  Swapchain(const Swapchain&) = delete;
  Swapchain& operator=(const Swapchain&) = delete;

  VkRenderPass render_pass() const { return render_pass_; }
  uint32_t min_image_count() const { return min_image_count_; }
  uint32_t image_count() const { return static_cast<uint32_t>(images_.size()); }
  VkExtent2D extent() const { return extent_; }
  bool can_capture() const { return can_capture_; }

  // (Re)creates the swapchain for a framebuffer of width x height; false when that is empty
  // (minimised).
  bool rebuild(int width, int height);

  enum class FrameResult { presented, out_of_date };

  // Draws `draw_data` into the next swapchain image and presents it. With `capture`, the image is
  // also copied back before presenting and returned in `captured`.
  FrameResult render(ImDrawData* draw_data, bool capture, std::optional<RgbaImage>& captured, bool& rebuild_needed);

 private:
  void destroy_images();

  GraphicsContext& graphics_;
  VkSurfaceKHR surface_;
  VkSurfaceFormatKHR format_{};
  VkRenderPass render_pass_ = VK_NULL_HANDLE;
  VkSwapchainKHR swapchain_ = VK_NULL_HANDLE;
  VkExtent2D extent_{};
  uint32_t min_image_count_ = 2;
  bool can_capture_ = false;
  std::vector<VkImage> images_;                   // (image count) owned by the swapchain
  std::vector<VkImageView> views_;                // (image count)
  std::vector<VkFramebuffer> framebuffers_;       // (image count)
  std::vector<VkCommandBuffer> command_buffers_;  // (image count)
  std::vector<VkSemaphore> render_complete_;      // (image count)
  VkSemaphore image_acquired_ = VK_NULL_HANDLE;
  VkFence in_flight_ = VK_NULL_HANDLE;
  ReadbackBuffer readback_;  // (height, width, 4) bytes of the captured image, made on first capture
};

}  // namespace vkt::ui
