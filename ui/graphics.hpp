#pragma once
// The dashboard's own Vulkan setup: an instance, a device with a GRAPHICS queue (the compute
// engine's vk::Context prefers a compute-only queue and draws nothing), and ImGui's Vulkan
// backend on a render pass. Instance, validation and device ranking are engine/vk/instance.hpp's,
// shared with vk::Context. Used by the live window and by the offscreen PNG renderer; it may
// pick the same physical device as the trainer or any other.
//
// VKT_VALIDATION=1 turns the validation layers on here too. Errors are counted in
// ui::validation_errors(), not in the engine's counter, so tests check it explicitly.
#include <vulkan/vulkan.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/vk/instance.hpp"

namespace vkt::ui {

// Validation errors reported to the dashboard's Vulkan instances in this process.
uint32_t validation_errors();

class GraphicsContext {
 public:
  // Creates the instance with `instance_extensions` (e.g. what GLFW needs for a surface).
  explicit GraphicsContext(const std::vector<const char*>& instance_extensions = {});
  ~GraphicsContext();
  GraphicsContext(const GraphicsContext&) = delete;
  GraphicsContext& operator=(const GraphicsContext&) = delete;

  // Chooses a device with a graphics queue family (that can present to `surface`, when given)
  // and creates it with one queue, a command pool and a descriptor pool for ImGui.
  // VKT_DASHBOARD_DEVICE=N picks device N; otherwise discrete > integrated > virtual > cpu.
  void create_device(VkSurfaceKHR surface = VK_NULL_HANDLE);

  VkInstance instance() const { return instance_.handle(); }
  VkPhysicalDevice physical_device() const { return physical_device_; }
  VkDevice device() const { return device_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }
  VkCommandPool command_pool() const { return command_pool_; }
  VkDescriptorPool descriptor_pool() const { return descriptor_pool_; }
  const std::string& device_name() const { return device_name_; }
  bool validation_enabled() const { return instance_.validation_enabled(); }

  // Memory for `requirements` in the first memory type that has all the properties of one of
  // `choices`, tried in order (the preferred first); throws when none has.
  VkDeviceMemory allocate_memory(const VkMemoryRequirements& requirements,
                                 std::initializer_list<VkMemoryPropertyFlags> choices) const;
  // Records with `record` into a fresh command buffer, submits it and waits.
  void submit_once(const std::function<void(VkCommandBuffer)>& record);

 private:
  vk::Instance instance_;  // first: destroyed last, after the device
  VkPhysicalDevice physical_device_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkDescriptorPool descriptor_pool_ = VK_NULL_HANDLE;
  std::string device_name_;
};

// A render pass for ImGui: one colour attachment of `format`, cleared, then left in `final_layout`.
// With `read_by_transfer` its colour writes are made visible to a copy that follows (readback).
VkRenderPass create_color_render_pass(VkDevice device, VkFormat format, VkImageLayout final_layout,
                                      bool read_by_transfer);

// Initialises ImGui's Vulkan backend for the CURRENT ImGui context on `render_pass` (subpass 0,
// one sample) and uploads the font atlas. Pair with ImGui_ImplVulkan_Shutdown().
void init_imgui_vulkan(GraphicsContext& graphics, VkRenderPass render_pass, uint32_t min_image_count,
                       uint32_t image_count);

// A host-visible buffer to read images back into.
struct ReadbackBuffer {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void* mapped = nullptr;
  VkDeviceSize bytes = 0;
  void create(GraphicsContext& graphics, VkDeviceSize size);
  void destroy(VkDevice device);
};

// Records: `image` (in `layout`) -> TRANSFER_SRC, copy into `buffer` (tightly packed), image
// back to `layout`, and a barrier that makes the copy visible to the host.
void record_image_readback(VkCommandBuffer command_buffer, VkImage image, VkImageLayout layout, uint32_t width,
                           uint32_t height, VkBuffer buffer);

// 8-bit RGBA pixels, rows top to bottom.
struct RgbaImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // (height, width, 4) RGBA8
  const uint8_t* at(int x, int y) const { return pixels.data() + (static_cast<size_t>(y) * width + x) * 4; }
};
// Copies a read-back image into RGBA, swapping B and R for BGRA formats; alpha is set to 255
// (the dashboard is opaque; some formats leave alpha blended).
RgbaImage image_from_readback(const void* data, uint32_t width, uint32_t height, VkFormat format);

}  // namespace vkt::ui
