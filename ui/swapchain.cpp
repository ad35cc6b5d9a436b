#include "ui/swapchain.hpp"

#include <imgui.h>
#include <imgui_impl_vulkan.h>

#include <algorithm>

#include "engine/vk/check.hpp"
#include "ui/style.hpp"

namespace vkt::ui {

Swapchain::Swapchain(GraphicsContext& graphics, VkSurfaceKHR surface) : graphics_(graphics), surface_(surface) {
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

Swapchain::~Swapchain() {
  VkDevice device = graphics_.device();
  vkDeviceWaitIdle(device);
  destroy_images();
  if (swapchain_) vkDestroySwapchainKHR(device, swapchain_, nullptr);
  readback_.destroy(device);
  vkDestroyFence(device, in_flight_, nullptr);
  vkDestroySemaphore(device, image_acquired_, nullptr);
  vkDestroyRenderPass(device, render_pass_, nullptr);
}

bool Swapchain::rebuild(int width, int height) {
  VkDevice device = graphics_.device();
  vkDeviceWaitIdle(device);
  VkSurfaceCapabilitiesKHR caps;
  VK_CHECK(vkGetPhysicalDeviceSurfaceCapabilitiesKHR(graphics_.physical_device(), surface_, &caps));
  VkExtent2D extent = caps.currentExtent;
  if (extent.width == 0xFFFFFFFFu) {  // the surface takes the swapchain's size
    extent.width =
        std::clamp(static_cast<uint32_t>(std::max(width, 0)), caps.minImageExtent.width, caps.maxImageExtent.width);
    extent.height =
        std::clamp(static_cast<uint32_t>(std::max(height, 0)), caps.minImageExtent.height, caps.maxImageExtent.height);
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
  for (VkCompositeAlphaFlagBitsKHR alpha :
       {VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR, VK_COMPOSITE_ALPHA_INHERIT_BIT_KHR,
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

Swapchain::FrameResult Swapchain::render(ImDrawData* draw_data, bool capture, std::optional<RgbaImage>& captured,
                                         bool& rebuild_needed) {
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
  if (result == VK_SUBOPTIMAL_KHR)
    rebuild_needed = true;
  else
    VK_CHECK(result);
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
  if (result == VK_ERROR_OUT_OF_DATE_KHR || result == VK_SUBOPTIMAL_KHR)
    rebuild_needed = true;
  else
    VK_CHECK(result);
  if (capture) {
    VK_CHECK(vkWaitForFences(device, 1, &in_flight_, VK_TRUE, UINT64_MAX));
    captured = image_from_readback(readback_.mapped, extent_.width, extent_.height, format_.format);
  }
  return FrameResult::presented;
}

void Swapchain::destroy_images() {
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

}  // namespace vkt::ui
