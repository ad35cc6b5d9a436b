#include "engine/vk/check.hpp"

namespace vkt::vk {

const char* result_name(VkResult result) {
  switch (result) {
#define CASE(name) \
  case name:       \
    return #name;
    CASE(VK_SUCCESS)
    CASE(VK_NOT_READY)
    CASE(VK_TIMEOUT) CASE(VK_EVENT_SET) CASE(VK_EVENT_RESET) CASE(VK_INCOMPLETE) CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
        CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY) CASE(VK_ERROR_INITIALIZATION_FAILED) CASE(VK_ERROR_DEVICE_LOST)
            CASE(VK_ERROR_MEMORY_MAP_FAILED) CASE(VK_ERROR_LAYER_NOT_PRESENT) CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
                CASE(VK_ERROR_FEATURE_NOT_PRESENT) CASE(VK_ERROR_INCOMPATIBLE_DRIVER) CASE(VK_ERROR_TOO_MANY_OBJECTS)
                    CASE(VK_ERROR_FORMAT_NOT_SUPPORTED) CASE(VK_ERROR_FRAGMENTED_POOL) CASE(VK_ERROR_UNKNOWN)
                        CASE(VK_ERROR_OUT_OF_POOL_MEMORY) CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
                            CASE(VK_ERROR_FRAGMENTATION) CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
                                CASE(VK_ERROR_SURFACE_LOST_KHR) CASE(VK_ERROR_NATIVE_WINDOW_IN_USE_KHR)
                                    CASE(VK_SUBOPTIMAL_KHR) CASE(VK_ERROR_OUT_OF_DATE_KHR)
                                        CASE(VK_ERROR_VALIDATION_FAILED_EXT)
#undef CASE
                                            default : return "VK_RESULT_UNKNOWN";
  }
}

void throw_vulkan_error(VkResult result, const char* expression, const char* file, int line) {
  std::string what =
      std::string(expression) + " failed with " + result_name(result) + " at " + file + ":" + std::to_string(line);
  if (result == VK_ERROR_OUT_OF_DEVICE_MEMORY || result == VK_ERROR_OUT_OF_HOST_MEMORY)
    what +=
        "\n---> HINT: the run does not fit in memory; `vktune plan` with the same flags shows where it goes "
        "(try --method qlora, --gradient-checkpointing, a smaller batch or --offload-optimizer)";
  if (result == VK_ERROR_DEVICE_LOST)
    what +=
        "\n---> HINT: the device was lost (driver reset or a kernel ran too long); re-run with "
        "VKT_VALIDATION=1 to look for invalid usage";
  throw VulkanError(result, what);
}

}  // namespace vkt::vk
