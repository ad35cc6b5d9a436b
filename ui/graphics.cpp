#include "ui/graphics.hpp"

#include <imgui.h>
#include <imgui_impl_vulkan.h>

#include <algorithm>
#include <cstring>

#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/vk/check.hpp"
#include "engine/vk/instance.hpp"

namespace vkt::ui {

namespace {

// The dashboard's instances count apart from the engine's (ui::validation_errors()).
vk::ValidationTally dashboard_validation{"vulkan validation (dashboard)", 20};

vk::InstanceOptions dashboard_instance_options(const std::vector<const char*>& extensions) {
  vk::InstanceOptions options;
  options.application_name = "vktune dashboard";
  options.api_version = VK_API_VERSION_1_1;  // nothing newer is needed to draw ImGui
  options.extensions = extensions;
  options.tally = &dashboard_validation;
  options.for_whom = " for the dashboard";
  return options;
}

void check_imgui_result(VkResult result) {
  if (result != VK_SUCCESS) vk::throw_vulkan_error(result, "ImGui Vulkan backend", __FILE__, __LINE__);
}

// A graphics queue family of `device` that can present to `surface` (when given), or -1.
int graphics_queue_family(VkPhysicalDevice device, VkSurfaceKHR surface) {
  uint32_t family_count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(device, &family_count, nullptr);
  std::vector<VkQueueFamilyProperties> families(family_count);
  vkGetPhysicalDeviceQueueFamilyProperties(device, &family_count, families.data());
  for (uint32_t i = 0; i < family_count; i++) {
    if (!(families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) continue;
    VkBool32 present = VK_TRUE;
    if (surface) vkGetPhysicalDeviceSurfaceSupportKHR(device, i, surface, &present);
    if (present) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

uint32_t validation_errors() { return dashboard_validation.errors.load(); }

GraphicsContext::GraphicsContext(const std::vector<const char*>& instance_extensions)
    : instance_(dashboard_instance_options(instance_extensions)) {}

void GraphicsContext::create_device(VkSurfaceKHR surface) {
  auto devices = vk::physical_devices(instance_.handle());
  int wanted = vk::env_int("VKT_DASHBOARD_DEVICE", -1);
  int best = vk::best_device(devices, [&](uint32_t index, VkPhysicalDevice device) {
    bool allowed = wanted < 0 || static_cast<int>(index) == wanted;
    return allowed && graphics_queue_family(device, surface) >= 0;
  });
  if (best < 0)
    throw UserError(std::string("no Vulkan device with a graphics queue") + (surface ? " that can show a window" : "") +
                        " was found for the dashboard",
                    wanted >= 0 ? "VKT_DASHBOARD_DEVICE names a device that cannot draw; unset it"
                                : "install Mesa's lavapipe (`apt-get install mesa-vulkan-drivers`) or a GPU driver");
  physical_device_ = devices[best];
  queue_family_ = static_cast<uint32_t>(graphics_queue_family(physical_device_, surface));
  VkPhysicalDeviceProperties properties;
  vkGetPhysicalDeviceProperties(physical_device_, &properties);
  device_name_ = properties.deviceName;

  std::vector<const char*> extensions;
  if (surface) extensions.push_back(VK_KHR_SWAPCHAIN_EXTENSION_NAME);
  device_ = vk::create_device_with_one_queue(physical_device_, queue_family_, extensions, nullptr);
  vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
  command_pool_ = vk::create_command_pool(device_, queue_family_);
  // ImGui needs one combined image sampler (the font atlas); a few spare.
  VkDescriptorPoolSize sizes[] = {{VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER, 8}};
  VkDescriptorPoolCreateInfo descriptor_info{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  descriptor_info.flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT;
  descriptor_info.maxSets = 8;
  descriptor_info.poolSizeCount = 1;
  descriptor_info.pPoolSizes = sizes;
  VK_CHECK(vkCreateDescriptorPool(device_, &descriptor_info, nullptr, &descriptor_pool_));
}

GraphicsContext::~GraphicsContext() {
  if (device_) {
    vkDeviceWaitIdle(device_);
    if (descriptor_pool_) vkDestroyDescriptorPool(device_, descriptor_pool_, nullptr);
    if (command_pool_) vkDestroyCommandPool(device_, command_pool_, nullptr);
    vkDestroyDevice(device_, nullptr);
  }
}

VkDeviceMemory GraphicsContext::allocate_memory(const VkMemoryRequirements& requirements,
                                                std::initializer_list<VkMemoryPropertyFlags> choices) const {
  VkPhysicalDeviceMemoryProperties memory;
  vkGetPhysicalDeviceMemoryProperties(physical_device_, &memory);
  for (VkMemoryPropertyFlags properties : choices)
    for (uint32_t i = 0; i < memory.memoryTypeCount; i++) {
      bool allowed = requirements.memoryTypeBits & (1u << i);
      if (!allowed || (memory.memoryTypes[i].propertyFlags & properties) != properties) continue;
      VkMemoryAllocateInfo allocate{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
      allocate.allocationSize = requirements.size;
      allocate.memoryTypeIndex = i;
      VkDeviceMemory allocated = VK_NULL_HANDLE;
      VK_CHECK(vkAllocateMemory(device_, &allocate, nullptr, &allocated));
      return allocated;
    }
  throw vk::VulkanError(VK_ERROR_FEATURE_NOT_PRESENT,
                        "the dashboard's device has no memory type with the needed properties");
}

void GraphicsContext::submit_once(const std::function<void(VkCommandBuffer)>& record) {
  VkCommandBufferAllocateInfo allocate{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  allocate.commandPool = command_pool_;
  allocate.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  allocate.commandBufferCount = 1;
  VkCommandBuffer command_buffer = VK_NULL_HANDLE;
  VK_CHECK(vkAllocateCommandBuffers(device_, &allocate, &command_buffer));
  VkCommandBufferBeginInfo begin{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  VK_CHECK(vkBeginCommandBuffer(command_buffer, &begin));
  record(command_buffer);
  VK_CHECK(vkEndCommandBuffer(command_buffer));
  VkFenceCreateInfo fence_info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkFence fence = VK_NULL_HANDLE;
  VK_CHECK(vkCreateFence(device_, &fence_info, nullptr, &fence));
  VkSubmitInfo submit{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &command_buffer;
  VkResult result = vkQueueSubmit(queue_, 1, &submit, fence);
  if (result == VK_SUCCESS) result = vkWaitForFences(device_, 1, &fence, VK_TRUE, UINT64_MAX);
  vkDestroyFence(device_, fence, nullptr);
  vkFreeCommandBuffers(device_, command_pool_, 1, &command_buffer);
  VK_CHECK(result);
}

void init_imgui_vulkan(GraphicsContext& graphics, VkRenderPass render_pass, uint32_t min_image_count,
                       uint32_t image_count) {
  ImGui_ImplVulkan_InitInfo info;
  std::memset(&info, 0, sizeof info);  // the backend asks for zero-cleared init info
  info.Instance = graphics.instance();
  info.PhysicalDevice = graphics.physical_device();
  info.Device = graphics.device();
  info.QueueFamily = graphics.queue_family();
  info.Queue = graphics.queue();
  info.DescriptorPool = graphics.descriptor_pool();
  info.Subpass = 0;
  info.MinImageCount = std::max(2u, min_image_count);
  info.ImageCount = std::max(info.MinImageCount, image_count);
  info.MSAASamples = VK_SAMPLE_COUNT_1_BIT;
  info.CheckVkResultFn = check_imgui_result;
  if (!ImGui_ImplVulkan_Init(&info, render_pass))
    throw vk::VulkanError(VK_ERROR_INITIALIZATION_FAILED, "ImGui's Vulkan backend did not initialise");
  graphics.submit_once([](VkCommandBuffer command_buffer) { ImGui_ImplVulkan_CreateFontsTexture(command_buffer); });
  ImGui_ImplVulkan_DestroyFontUploadObjects();
}

void ReadbackBuffer::create(GraphicsContext& graphics, VkDeviceSize size) {
  VkDevice device = graphics.device();
  bytes = size;
  VkBufferCreateInfo info{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  info.size = size;
  info.usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VK_CHECK(vkCreateBuffer(device, &info, nullptr, &buffer));
  VkMemoryRequirements requirements;
  vkGetBufferMemoryRequirements(device, buffer, &requirements);
  // Coherent, so no invalidate is needed; cached when available, for reading.
  const VkMemoryPropertyFlags coherent = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  memory = graphics.allocate_memory(requirements, {coherent | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, coherent});
  VK_CHECK(vkBindBufferMemory(device, buffer, memory, 0));
  VK_CHECK(vkMapMemory(device, memory, 0, VK_WHOLE_SIZE, 0, &mapped));
}

void ReadbackBuffer::destroy(VkDevice device) {
  if (memory) {
    vkUnmapMemory(device, memory);
    vkFreeMemory(device, memory, nullptr);
  }
  if (buffer) vkDestroyBuffer(device, buffer, nullptr);
  *this = ReadbackBuffer{};
}

void record_image_readback(VkCommandBuffer command_buffer, VkImage image, VkImageLayout layout, uint32_t width,
                           uint32_t height, VkBuffer buffer) {
  VkImageMemoryBarrier to_transfer{VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER};
  to_transfer.srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
  to_transfer.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
  to_transfer.oldLayout = layout;
  to_transfer.newLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
  to_transfer.srcQueueFamilyIndex = to_transfer.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  to_transfer.image = image;
  to_transfer.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  vkCmdPipelineBarrier(command_buffer, VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0,
                       0, nullptr, 0, nullptr, 1, &to_transfer);
  VkBufferImageCopy region{};
  region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  region.imageExtent = {width, height, 1};
  vkCmdCopyImageToBuffer(command_buffer, image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buffer, 1, &region);
  if (layout != VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL) {
    VkImageMemoryBarrier back = to_transfer;
    back.srcAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
    back.dstAccessMask = 0;  // presentation needs no access mask; the semaphore orders it
    back.oldLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
    back.newLayout = layout;
    vkCmdPipelineBarrier(command_buffer, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0, 0,
                         nullptr, 0, nullptr, 1, &back);
  }
  VkBufferMemoryBarrier to_host{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
  to_host.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  to_host.srcQueueFamilyIndex = to_host.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  to_host.buffer = buffer;
  to_host.size = VK_WHOLE_SIZE;
  vkCmdPipelineBarrier(command_buffer, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, nullptr, 1,
                       &to_host, 0, nullptr);
}

RgbaImage image_from_readback(const void* data, uint32_t width, uint32_t height, VkFormat format) {
  RgbaImage image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.pixels.resize(static_cast<size_t>(width) * height * 4);
  const auto* source = static_cast<const uint8_t*>(data);
  bool bgra = format == VK_FORMAT_B8G8R8A8_UNORM || format == VK_FORMAT_B8G8R8A8_SRGB;
  for (size_t i = 0; i < static_cast<size_t>(width) * height; i++) {
    image.pixels[i * 4 + 0] = source[i * 4 + (bgra ? 2 : 0)];
    image.pixels[i * 4 + 1] = source[i * 4 + 1];
    image.pixels[i * 4 + 2] = source[i * 4 + (bgra ? 0 : 2)];
    image.pixels[i * 4 + 3] = 255;
  }
  return image;
}

VkRenderPass create_color_render_pass(VkDevice device, VkFormat format, VkImageLayout final_layout,
                                      bool read_by_transfer) {
  VkAttachmentDescription attachment{};
  attachment.format = format;
  attachment.samples = VK_SAMPLE_COUNT_1_BIT;
  attachment.loadOp = VK_ATTACHMENT_LOAD_OP_CLEAR;
  attachment.storeOp = VK_ATTACHMENT_STORE_OP_STORE;
  attachment.stencilLoadOp = VK_ATTACHMENT_LOAD_OP_DONT_CARE;
  attachment.stencilStoreOp = VK_ATTACHMENT_STORE_OP_DONT_CARE;
  attachment.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
  attachment.finalLayout = final_layout;
  VkAttachmentReference color{0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL};
  VkSubpassDescription subpass{};
  subpass.pipelineBindPoint = VK_PIPELINE_BIND_POINT_GRAPHICS;
  subpass.colorAttachmentCount = 1;
  subpass.pColorAttachments = &color;
  VkSubpassDependency dependencies[2] = {};
  dependencies[0].srcSubpass = VK_SUBPASS_EXTERNAL;
  dependencies[0].dstSubpass = 0;
  dependencies[0].srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
  dependencies[0].dstStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
  dependencies[0].dstAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
  dependencies[1].srcSubpass = 0;
  dependencies[1].dstSubpass = VK_SUBPASS_EXTERNAL;
  dependencies[1].srcStageMask = VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT;
  dependencies[1].srcAccessMask = VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT;
  dependencies[1].dstStageMask = VK_PIPELINE_STAGE_TRANSFER_BIT;
  dependencies[1].dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
  VkRenderPassCreateInfo pass_info{VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO};
  pass_info.attachmentCount = 1;
  pass_info.pAttachments = &attachment;
  pass_info.subpassCount = 1;
  pass_info.pSubpasses = &subpass;
  pass_info.dependencyCount = read_by_transfer ? 2 : 1;
  pass_info.pDependencies = dependencies;
  VkRenderPass render_pass = VK_NULL_HANDLE;
  VK_CHECK(vkCreateRenderPass(device, &pass_info, nullptr, &render_pass));
  return render_pass;
}

}  // namespace vkt::ui
