#include "engine/vk/capabilities.hpp"

#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/files.hpp"
#include "engine/vk/instance.hpp"

namespace vkt::vk {
namespace {

const char* vendor_name(uint32_t vendor_id) {
  switch (vendor_id) {
    case 0x10de:
      return "NVIDIA";
    case 0x1002:
      return "AMD";
    case 0x8086:
      return "Intel";
    case 0x106b:
      return "Apple";
    case 0x13b5:
      return "ARM";
    case 0x5143:
      return "Qualcomm";
    case 0x10005:
      return "Mesa";
    default:
      return "unknown";
  }
}

const char* type_name(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return "cpu";
    default:
      return "other";
  }
}

std::string yes_no(bool value) { return value ? "yes" : "no"; }

}  // namespace

Capabilities query_capabilities(VkPhysicalDevice device, uint32_t index) {
  Capabilities caps;
  caps.index = index;
  auto extensions = device_extensions(device);

  VkPhysicalDeviceDriverProperties driver{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceSubgroupSizeControlProperties subgroup_control{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
  VkPhysicalDeviceSubgroupProperties subgroup{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceProperties2 properties{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  properties.pNext = &driver;
  driver.pNext = &subgroup;
  subgroup.pNext = &subgroup_control;
  VkPhysicalDeviceIDProperties id{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
  subgroup_control.pNext = &id;
  vkGetPhysicalDeviceProperties2(device, &properties);
  const auto& props = properties.properties;
  const auto& limits = props.limits;

  caps.name = props.deviceName;
  caps.vendor_id = props.vendorID;
  caps.device_id = props.deviceID;
  caps.vendor = vendor_name(props.vendorID);
  caps.api_version = props.apiVersion;
  caps.driver_version = props.driverVersion;
  static const char* hex_digits = "0123456789abcdef";
  for (uint8_t byte : id.deviceUUID) {
    caps.device_uuid += hex_digits[byte >> 4];
    caps.device_uuid += hex_digits[byte & 15];
  }
  caps.device_type = props.deviceType;
  caps.type = type_name(props.deviceType);
  caps.driver_name = driver.driverName;
  caps.driver_info = driver.driverInfo;
  caps.subgroup_size = subgroup.subgroupSize;
  caps.min_subgroup_size = subgroup_control.minSubgroupSize ? subgroup_control.minSubgroupSize : subgroup.subgroupSize;
  caps.max_subgroup_size = subgroup_control.maxSubgroupSize ? subgroup_control.maxSubgroupSize : subgroup.subgroupSize;
  caps.subgroup_arithmetic = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                             (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  caps.subgroup_shuffle = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                          (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
  caps.max_shared_memory = limits.maxComputeSharedMemorySize;
  caps.max_storage_buffer_range = limits.maxStorageBufferRange;
  caps.max_push_constants = limits.maxPushConstantsSize;
  caps.max_workgroup_invocations = limits.maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; i++) caps.max_workgroup_count[i] = limits.maxComputeWorkGroupCount[i];
  caps.timestamps = limits.timestampComputeAndGraphics && limits.timestampPeriod > 0;
  caps.timestamp_period_ns = limits.timestampPeriod;

  VkPhysicalDeviceMaintenance3Properties maintenance3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceProperties2 properties_m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  properties_m3.pNext = &maintenance3;
  vkGetPhysicalDeviceProperties2(device, &properties_m3);
  caps.max_memory_allocation_size = maintenance3.maxMemoryAllocationSize;

  VkPhysicalDeviceVulkan12Features features12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceVulkan11Features features11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  if (VK_API_VERSION_MINOR(props.apiVersion) >= 2 || VK_API_VERSION_MAJOR(props.apiVersion) > 1) {
    features.pNext = &features11;
    features11.pNext = &features12;
  }
  vkGetPhysicalDeviceFeatures2(device, &features);
  caps.fp16_arithmetic = features12.shaderFloat16;
  caps.int8_arithmetic = features12.shaderInt8;
  caps.storage_8bit = features12.storageBuffer8BitAccess;
  caps.storage_16bit = features11.storageBuffer16BitAccess;
  caps.buffer_device_address = features12.bufferDeviceAddress;
  caps.int64 = features.features.shaderInt64;
  caps.int16_arithmetic = features.features.shaderInt16;
  caps.cooperative_matrix =
      has_extension(extensions, "VK_KHR_cooperative_matrix") || has_extension(extensions, "VK_NV_cooperative_matrix");
  caps.memory_budget = has_extension(extensions, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);

  VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
  VkPhysicalDeviceMemoryProperties2 memory{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2};
  if (caps.memory_budget) memory.pNext = &budget;
  vkGetPhysicalDeviceMemoryProperties2(device, &memory);
  for (uint32_t i = 0; i < memory.memoryProperties.memoryHeapCount; i++) {
    MemoryHeapReport heap;
    heap.size = memory.memoryProperties.memoryHeaps[i].size;
    heap.device_local = memory.memoryProperties.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT;
    if (caps.memory_budget) {
      heap.budget = budget.heapBudget[i];
      heap.usage = budget.heapUsage[i];
    }
    caps.heaps.push_back(heap);
  }
  return caps;
}

bool Capabilities::usable() const { return api_version >= VK_API_VERSION_1_2 && buffer_device_address && int64; }

std::string Capabilities::api_version_string() const {
  return std::to_string(VK_API_VERSION_MAJOR(api_version)) + "." + std::to_string(VK_API_VERSION_MINOR(api_version)) +
         "." + std::to_string(VK_API_VERSION_PATCH(api_version));
}

std::string Capabilities::summary_line() const {
  std::ostringstream line;
  line << "device " << index << ": " << name << " | " << vendor << " " << type << " | " << driver_info << " | Vulkan "
       << api_version_string() << " | fp16 " << yes_no(fp16_arithmetic) << " | int8 " << yes_no(int8_arithmetic)
       << " | storage8/16 " << yes_no(storage_8bit) << "/" << yes_no(storage_16bit) << " | subgroup " << subgroup_size
       << " | shared " << max_shared_memory / 1024 << " KiB | max SSBO range "
       << format_bytes(static_cast<double>(max_storage_buffer_range)) << " | max alloc "
       << format_bytes(static_cast<double>(max_memory_allocation_size)) << " | coopmat " << yes_no(cooperative_matrix);
  for (size_t i = 0; i < heaps.size(); i++) {
    line << " | heap" << i << (heaps[i].device_local ? " device " : " host ")
         << format_bytes(static_cast<double>(heaps[i].size));
    if (heaps[i].budget) line << " (budget " << format_bytes(static_cast<double>(heaps[i].budget)) << ")";
  }
  if (!usable()) line << " | UNUSABLE: needs Vulkan 1.2 with bufferDeviceAddress and shaderInt64";
  return line.str();
}

std::string Capabilities::to_json() const {
  nlohmann::json heaps_json = nlohmann::json::array();
  for (const auto& heap : heaps)
    heaps_json.push_back(
        {{"size", heap.size}, {"budget", heap.budget}, {"usage", heap.usage}, {"device_local", heap.device_local}});
  nlohmann::json json = {{"index", index},
                         {"name", name},
                         {"vendor", vendor},
                         {"vendor_id", vendor_id},
                         {"device_id", device_id},
                         {"type", type},
                         {"driver_name", driver_name},
                         {"driver_info", driver_info},
                         {"api_version", api_version_string()},
                         {"driver_version", driver_version},
                         {"device_uuid", device_uuid},
                         {"fp16", fp16_arithmetic},
                         {"int8", int8_arithmetic},
                         {"int16", int16_arithmetic},
                         {"int64", int64},
                         {"storage_8bit", storage_8bit},
                         {"storage_16bit", storage_16bit},
                         {"buffer_device_address", buffer_device_address},
                         {"subgroup_size", subgroup_size},
                         {"min_subgroup_size", min_subgroup_size},
                         {"max_subgroup_size", max_subgroup_size},
                         {"subgroup_arithmetic", subgroup_arithmetic},
                         {"subgroup_shuffle", subgroup_shuffle},
                         {"max_shared_memory", max_shared_memory},
                         {"max_storage_buffer_range", max_storage_buffer_range},
                         {"max_memory_allocation_size", max_memory_allocation_size},
                         {"max_push_constants", max_push_constants},
                         {"cooperative_matrix", cooperative_matrix},
                         {"memory_budget", memory_budget},
                         {"timestamps", timestamps},
                         {"usable", usable()},
                         {"heaps", heaps_json}};
  return json.dump();
}

std::vector<Capabilities> list_devices() {
  InstanceOptions options;
  options.validation = 0;  // only reads properties
  Instance instance(options);
  std::vector<Capabilities> result;
  auto devices = physical_devices(instance.handle());
  for (uint32_t i = 0; i < devices.size(); i++) result.push_back(query_capabilities(devices[i], i));
  return result;
}

}  // namespace vkt::vk
