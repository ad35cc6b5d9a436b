#pragma once
// What a Vulkan device can do, read once at init: the one place kernels look to choose a variant
// (fp16, int8, subgroup operations, shared memory, cooperative matrices) and what
// `vktune devices` prints.
#include <vulkan/vulkan.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vkt::vk {

struct MemoryHeapReport {
  uint64_t size = 0;
  uint64_t budget = 0;  // VK_EXT_memory_budget: what this process may use (0 when unknown)
  uint64_t usage = 0;   // VK_EXT_memory_budget: what this process uses
  bool device_local = false;
};

// Everything vktune decides on at init about a device. One place; kernels read it.
struct Capabilities {
  uint32_t index = 0;  // position in vkEnumeratePhysicalDevices
  std::string name, vendor, driver_name, driver_info, type;
  uint32_t vendor_id = 0, device_id = 0, api_version = 0;
  uint32_t driver_version = 0;  // VkPhysicalDeviceProperties::driverVersion (vendor-encoded)
  std::string device_uuid;      // VkPhysicalDeviceIDProperties::deviceUUID, 32 hex digits (autotune cache key)
  VkPhysicalDeviceType device_type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
  bool fp16_arithmetic = false, int8_arithmetic = false, int16_arithmetic = false, int64 = false;
  bool storage_8bit = false, storage_16bit = false;
  bool buffer_device_address = false;
  uint32_t subgroup_size = 0, min_subgroup_size = 0, max_subgroup_size = 0;
  bool subgroup_arithmetic = false;  // subgroupAdd & co. in compute shaders
  bool subgroup_shuffle = false;     // subgroupShuffle in compute shaders (the direct kernel bodies)
  uint32_t max_shared_memory = 0;
  uint64_t max_storage_buffer_range = 0, max_memory_allocation_size = 0;
  uint32_t max_push_constants = 0, max_workgroup_invocations = 0;
  uint32_t max_workgroup_count[3] = {0, 0, 0};
  bool cooperative_matrix = false;  // VK_KHR_cooperative_matrix or VK_NV_cooperative_matrix
  bool memory_budget = false;       // VK_EXT_memory_budget
  bool timestamps = false;
  float timestamp_period_ns = 1.0f;
  std::vector<MemoryHeapReport> heaps;

  // Usable by vktune at all: Vulkan 1.2 with buffer device addresses and 64-bit integers.
  bool usable() const;
  std::string api_version_string() const;
  // "llvmpipe (LLVM 15) | cpu | Mesa 22.3.6 | Vulkan 1.3.230 | fp16 yes | int8 yes | ..."
  std::string summary_line() const;
  std::string to_json() const;  // one JSON object
};

// Reads `device`'s capabilities; `index` is its position in vkEnumeratePhysicalDevices.
Capabilities query_capabilities(VkPhysicalDevice device, uint32_t index);

// Reads every device's capabilities (a temporary instance, no device created).
std::vector<Capabilities> list_devices();

}  // namespace vkt::vk
