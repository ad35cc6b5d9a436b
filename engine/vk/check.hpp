#pragma once
#include <vulkan/vulkan.h>

#include <stdexcept>
#include <string>

namespace vkt::vk {

const char* result_name(VkResult result);

// A Vulkan call failed: names the expression, the VkResult and where.
class VulkanError : public std::runtime_error {
 public:
  VulkanError(VkResult result, const std::string& what) : std::runtime_error(what), result_(result) {}
  VkResult result() const { return result_; }

 private:
  VkResult result_;
};

[[noreturn]] void throw_vulkan_error(VkResult result, const char* expression, const char* file, int line);

}  // namespace vkt::vk

#define VK_CHECK(expr)                                                                                              \
  do {                                                                                                              \
    VkResult vk_check_result_ = (expr);                                                                             \
    if (vk_check_result_ != VK_SUCCESS) ::vkt::vk::throw_vulkan_error(vk_check_result_, #expr, __FILE__, __LINE__); \
  } while (0)
