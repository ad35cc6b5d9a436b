#include "engine/vk/context.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/vk/check.hpp"
#include "engine/vk/pipeline.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::vk {
namespace {

constexpr const char* validation_layer = "VK_LAYER_KHRONOS_validation";
constexpr const char* no_device_hint =
    "install a Vulkan driver: on Debian `apt-get install mesa-vulkan-drivers` gives the CPU driver (lavapipe); "
    "for a GPU install its vendor's Vulkan driver";

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::atoi(value) : fallback;
}

bool has_extension(const std::vector<VkExtensionProperties>& extensions, const char* name) {
  return std::any_of(extensions.begin(), extensions.end(),
                     [&](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

std::vector<VkExtensionProperties> device_extensions(VkPhysicalDevice device) {
  uint32_t count = 0;
  vkEnumerateDeviceExtensionProperties(device, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  vkEnumerateDeviceExtensionProperties(device, nullptr, &count, extensions.data());
  return extensions;
}

std::vector<VkExtensionProperties> instance_extensions() {
  uint32_t count = 0;
  vkEnumerateInstanceExtensionProperties(nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  vkEnumerateInstanceExtensionProperties(nullptr, &count, extensions.data());
  return extensions;
}

const char* vendor_name(uint32_t vendor_id) {
  switch (vendor_id) {
    case 0x10de: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    case 0x106b: return "Apple";
    case 0x13b5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x10005: return "Mesa";
    default: return "unknown";
  }
}

const char* type_name(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

int type_rank(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
    default: return 0;
  }
}

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
  vkGetPhysicalDeviceProperties2(device, &properties);
  const auto& props = properties.properties;
  const auto& limits = props.limits;

  caps.name = props.deviceName;
  caps.vendor_id = props.vendorID;
  caps.device_id = props.deviceID;
  caps.vendor = vendor_name(props.vendorID);
  caps.api_version = props.apiVersion;
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
  caps.cooperative_matrix = has_extension(extensions, "VK_KHR_cooperative_matrix") ||
                            has_extension(extensions, "VK_NV_cooperative_matrix");
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

std::string yes_no(bool value) { return value ? "yes" : "no"; }

}  // namespace

bool Capabilities::usable() const {
  return api_version >= VK_API_VERSION_1_2 && buffer_device_address && int64;
}

std::string Capabilities::api_version_string() const {
  return std::to_string(VK_API_VERSION_MAJOR(api_version)) + "." + std::to_string(VK_API_VERSION_MINOR(api_version)) +
         "." + std::to_string(VK_API_VERSION_PATCH(api_version));
}

std::string Capabilities::summary_line() const {
  std::ostringstream line;
  line << "device " << index << ": " << name << " | " << vendor << " " << type << " | " << driver_info << " | Vulkan " << api_version_string() << " | fp16 " << yes_no(fp16_arithmetic) << " | int8 "
       << yes_no(int8_arithmetic) << " | storage8/16 " << yes_no(storage_8bit) << "/" << yes_no(storage_16bit)
       << " | subgroup " << subgroup_size << " | shared " << max_shared_memory / 1024 << " KiB | max SSBO range "
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
    heaps_json.push_back({{"size", heap.size}, {"budget", heap.budget}, {"usage", heap.usage},
                          {"device_local", heap.device_local}});
  nlohmann::json json = {
      {"index", index}, {"name", name}, {"vendor", vendor}, {"vendor_id", vendor_id}, {"device_id", device_id},
      {"type", type}, {"driver_name", driver_name}, {"driver_info", driver_info},
      {"api_version", api_version_string()}, {"fp16", fp16_arithmetic}, {"int8", int8_arithmetic},
      {"int16", int16_arithmetic}, {"int64", int64}, {"storage_8bit", storage_8bit}, {"storage_16bit", storage_16bit},
      {"buffer_device_address", buffer_device_address}, {"subgroup_size", subgroup_size},
      {"min_subgroup_size", min_subgroup_size}, {"max_subgroup_size", max_subgroup_size},
      {"subgroup_arithmetic", subgroup_arithmetic}, {"subgroup_shuffle", subgroup_shuffle}, {"max_shared_memory", max_shared_memory},
      {"max_storage_buffer_range", max_storage_buffer_range},
      {"max_memory_allocation_size", max_memory_allocation_size}, {"max_push_constants", max_push_constants},
      {"cooperative_matrix", cooperative_matrix}, {"memory_budget", memory_budget}, {"timestamps", timestamps},
      {"usable", usable()}, {"heaps", heaps_json}};
  return json.dump();
}

namespace {
VkInstance create_plain_instance() {
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "vktune";
  app.apiVersion = VK_API_VERSION_1_3;
  VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  info.pApplicationInfo = &app;
  std::vector<const char*> extensions;
  if (has_extension(instance_extensions(), VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
    extensions.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
    info.flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }
  info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  VkInstance instance = VK_NULL_HANDLE;
  VkResult result = vkCreateInstance(&info, nullptr, &instance);
  if (result == VK_ERROR_INCOMPATIBLE_DRIVER || result == VK_ERROR_INITIALIZATION_FAILED)
    throw UserError("no Vulkan driver could be loaded", no_device_hint);
  VK_CHECK(result);
  return instance;
}

std::vector<VkPhysicalDevice> physical_devices(VkInstance instance) {
  uint32_t count = 0;
  VK_CHECK(vkEnumeratePhysicalDevices(instance, &count, nullptr));
  std::vector<VkPhysicalDevice> devices(count);
  VK_CHECK(vkEnumeratePhysicalDevices(instance, &count, devices.data()));
  return devices;
}
}  // namespace

std::vector<Capabilities> list_devices() {
  VkInstance instance = create_plain_instance();
  std::vector<Capabilities> result;
  auto devices = physical_devices(instance);
  for (uint32_t i = 0; i < devices.size(); i++) result.push_back(query_capabilities(devices[i], i));
  vkDestroyInstance(instance, nullptr);
  return result;
}

namespace {
std::atomic<uint32_t> process_errors{0};
}
uint32_t process_validation_errors() { return process_errors.load(); }

VkBool32 debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT,
                        const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  auto* context = static_cast<Context*>(user);
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    context->validation_errors_++;
    process_errors++;
    log::error(std::string("vulkan validation: ") + data->pMessage);
  } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
    context->validation_warnings_++;
    log::warn(std::string("vulkan validation: ") + data->pMessage);
  }
  return VK_FALSE;
}

Context::Context(ContextOptions options) {
  int validation = options.validation >= 0 ? options.validation : env_int("VKT_VALIDATION", 0);
  create_instance(validation);
  choose_device(options.device_index >= 0 ? options.device_index : env_int("VKT_DEVICE", -1));
  create_device();
  if (options.log_capabilities) log::info(caps_.summary_line());
}

void Context::create_instance(int validation) {
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "vktune";
  app.apiVersion = VK_API_VERSION_1_3;
  VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  info.pApplicationInfo = &app;
  std::vector<const char*> extensions, layers;
  auto available = instance_extensions();
  if (has_extension(available, VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
    extensions.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
    info.flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }
  VkDebugUtilsMessengerCreateInfoEXT messenger_info{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
  VkValidationFeatureEnableEXT sync_validation = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  VkValidationFeaturesEXT validation_features{VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT};
  if (validation > 0) {
    uint32_t count = 0;
    vkEnumerateInstanceLayerProperties(&count, nullptr);
    std::vector<VkLayerProperties> available_layers(count);
    vkEnumerateInstanceLayerProperties(&count, available_layers.data());
    bool found = std::any_of(available_layers.begin(), available_layers.end(),
                             [](const VkLayerProperties& l) { return std::strcmp(l.layerName, validation_layer) == 0; });
    if (!found)
      throw UserError("VKT_VALIDATION is set but the Khronos validation layer is not installed",
                      "apt-get install vulkan-validationlayers, or unset VKT_VALIDATION");
    layers.push_back(validation_layer);
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    messenger_info.messageSeverity =
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    messenger_info.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                                 VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                                 VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    messenger_info.pfnUserCallback = debug_callback;
    messenger_info.pUserData = this;
    info.pNext = &messenger_info;  // also catches messages from vkCreateInstance itself
    if (validation >= 2) {
      validation_features.enabledValidationFeatureCount = 1;
      validation_features.pEnabledValidationFeatures = &sync_validation;
      messenger_info.pNext = &validation_features;
    }
    validation_enabled_ = true;
  }
  info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  info.enabledLayerCount = static_cast<uint32_t>(layers.size());
  info.ppEnabledLayerNames = layers.data();
  VkResult result = vkCreateInstance(&info, nullptr, &instance_);
  if (result == VK_ERROR_INCOMPATIBLE_DRIVER || result == VK_ERROR_INITIALIZATION_FAILED)
    throw UserError("no Vulkan driver could be loaded", no_device_hint);
  VK_CHECK(result);
  if (validation_enabled_) {
    auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
    messenger_info.pNext = nullptr;
    VK_CHECK(create(instance_, &messenger_info, nullptr, &messenger_));
  }
}

void Context::choose_device(int device_index) {
  auto devices = physical_devices(instance_);
  if (devices.empty()) throw UserError("no Vulkan device found", no_device_hint);
  if (device_index >= 0) {
    if (device_index >= static_cast<int>(devices.size()))
      throw UserError("--device " + std::to_string(device_index) + " does not exist: there are " +
                          std::to_string(devices.size()) + " Vulkan devices",
                      "`vktune devices` lists them");
    physical_device_ = devices[device_index];
    caps_ = query_capabilities(physical_device_, static_cast<uint32_t>(device_index));
    if (!caps_.usable())
      throw UserError("device " + std::to_string(device_index) + " (" + caps_.name +
                          ") lacks Vulkan 1.2 buffer device addresses or 64-bit integers, which vktune needs",
                      "update its driver or choose another with --device N (`vktune devices`)");
    return;
  }
  int best_rank = -1;
  for (uint32_t i = 0; i < devices.size(); i++) {
    Capabilities caps = query_capabilities(devices[i], i);
    if (!caps.usable()) continue;
    int rank = type_rank(caps.device_type);
    if (rank > best_rank) {
      best_rank = rank;
      physical_device_ = devices[i];
      caps_ = caps;
    }
  }
  if (best_rank < 0)
    throw UserError("no Vulkan device supports Vulkan 1.2 with buffer device addresses and 64-bit integers",
                    no_device_hint);
}

void Context::create_device() {
  uint32_t family_count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_device_, &family_count, nullptr);
  std::vector<VkQueueFamilyProperties> families(family_count);
  vkGetPhysicalDeviceQueueFamilyProperties(physical_device_, &family_count, families.data());
  // Prefer a compute queue family without graphics (an async compute queue), else any compute one.
  int chosen = -1;
  for (uint32_t i = 0; i < family_count; i++) {
    bool compute = families[i].queueFlags & VK_QUEUE_COMPUTE_BIT;
    bool graphics = families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT;
    if (compute && (chosen < 0 || !graphics)) chosen = static_cast<int>(i);
    if (compute && !graphics) break;
  }
  if (chosen < 0) throw UserError("device " + caps_.name + " has no compute queue", "choose another with --device N");
  queue_family_ = static_cast<uint32_t>(chosen);
  if (families[queue_family_].timestampValidBits == 0) caps_.timestamps = false;

  float priority = 1.0f;
  VkDeviceQueueCreateInfo queue_info{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  queue_info.queueFamilyIndex = queue_family_;
  queue_info.queueCount = 1;
  queue_info.pQueuePriorities = &priority;

  VkPhysicalDeviceVulkan12Features features12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  features12.bufferDeviceAddress = VK_TRUE;
  features12.shaderFloat16 = caps_.fp16_arithmetic;
  features12.shaderInt8 = caps_.int8_arithmetic;
  features12.storageBuffer8BitAccess = caps_.storage_8bit;
  VkPhysicalDeviceVulkan11Features features11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  features11.storageBuffer16BitAccess = caps_.storage_16bit;
  features11.pNext = &features12;
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  features.features.shaderInt64 = VK_TRUE;
  features.features.shaderInt16 = caps_.int16_arithmetic;
  features.pNext = &features11;

  auto available = device_extensions(physical_device_);
  std::vector<const char*> extensions;
  if (caps_.memory_budget) extensions.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  if (has_extension(available, "VK_KHR_portability_subset")) extensions.push_back("VK_KHR_portability_subset");

  VkDeviceCreateInfo info{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  info.pNext = &features;
  info.queueCreateInfoCount = 1;
  info.pQueueCreateInfos = &queue_info;
  info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  VK_CHECK(vkCreateDevice(physical_device_, &info, nullptr, &device_));
  vkGetDeviceQueue(device_, queue_family_, 0, &queue_);

  VkCommandPoolCreateInfo pool_info{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pool_info.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pool_info.queueFamilyIndex = queue_family_;
  VK_CHECK(vkCreateCommandPool(device_, &pool_info, nullptr, &command_pool_));
  VkFenceCreateInfo fence_info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VK_CHECK(vkCreateFence(device_, &fence_info, nullptr, &fence_));

  VkPushConstantRange push_range{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_constant_bytes_};
  VkPipelineLayoutCreateInfo layout_info{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  layout_info.pushConstantRangeCount = 1;
  layout_info.pPushConstantRanges = &push_range;
  VK_CHECK(vkCreatePipelineLayout(device_, &layout_info, nullptr, &pipeline_layout_));

  allocator_ = std::make_unique<Allocator>(physical_device_, device_, ledger_, caps_.max_memory_allocation_size);
  pipelines_ = std::make_unique<PipelineCache>(device_, pipeline_layout_);
  one_shot_ = std::make_unique<Sequence>(*this);
}

Context::~Context() {
  if (device_) vkDeviceWaitIdle(device_);
  staging_ = Buffer();
  one_shot_.reset();
  pipelines_.reset();
  allocator_.reset();
  if (pipeline_layout_) vkDestroyPipelineLayout(device_, pipeline_layout_, nullptr);
  if (fence_) vkDestroyFence(device_, fence_, nullptr);
  if (command_pool_) vkDestroyCommandPool(device_, command_pool_, nullptr);
  if (device_) vkDestroyDevice(device_, nullptr);
  if (messenger_) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
    destroy(instance_, messenger_, nullptr);
  }
  if (instance_) vkDestroyInstance(instance_, nullptr);
}

std::vector<MemoryHeapReport> Context::memory_heaps() const {
  return query_capabilities(physical_device_, caps_.index).heaps;
}

void Context::submit(std::initializer_list<Sequence*> sequences) {
  std::vector<VkCommandBuffer> buffers;
  for (Sequence* sequence : sequences) buffers.push_back(sequence->command_buffer());
  VkSubmitInfo submit_info{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  submit_info.commandBufferCount = static_cast<uint32_t>(buffers.size());
  submit_info.pCommandBuffers = buffers.data();
  VK_CHECK(vkQueueSubmit(queue_, 1, &submit_info, fence_));
  VK_CHECK(vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX));
  VK_CHECK(vkResetFences(device_, 1, &fence_));
}

void Context::run(const std::function<void(Recorder&)>& record) {
  one_shot_->record(record);
  submit({one_shot_.get()});
}

Buffer& Context::staging_buffer(VkDeviceSize bytes) {
  if (!staging_.valid() || staging_.size() < bytes)
    staging_ = allocate(bytes, Category::staging, "staging", MemoryKind::staging);
  return staging_;
}

namespace {
constexpr VkDeviceSize staging_chunk = 32ull << 20;

bool direct_map_enabled() {
  static const bool enabled = env_int("VKT_DISABLE_DIRECT_MAP", 0) == 0;
  return enabled;
}
}  // namespace

void Context::upload(const Buffer& destination, const void* source, VkDeviceSize offset, VkDeviceSize bytes) {
  if (bytes == 0) bytes = destination.size() - offset;
  if (destination.mapped() && direct_map_enabled()) {
    // Host writes to coherent memory are visible to work submitted afterwards.
    std::memcpy(static_cast<char*>(destination.mapped()) + offset, source, bytes);
    return;
  }
  upload(destination.range(offset, bytes), source);
}

void Context::download(const Buffer& source, void* destination, VkDeviceSize offset, VkDeviceSize bytes) {
  if (bytes == 0) bytes = source.size() - offset;
  if (source.mapped() && direct_map_enabled()) {
    // Every Sequence ends with a barrier that makes device writes visible to the host.
    std::memcpy(destination, static_cast<const char*>(source.mapped()) + offset, bytes);
    return;
  }
  download(source.range(offset, bytes), destination);
}

void Context::upload(const BufferRange& destination, const void* source) {
  const auto* bytes = static_cast<const char*>(source);
  Buffer& staging = staging_buffer(std::min(destination.bytes, staging_chunk));
  for (VkDeviceSize done = 0; done < destination.bytes; done += staging_chunk) {
    VkDeviceSize count = std::min(staging_chunk, destination.bytes - done);
    std::memcpy(staging.mapped(), bytes + done, count);
    BufferRange part{destination.buffer, destination.offset + done, count, destination.address + done};
    run([&](Recorder& recorder) { recorder.copy(staging.range(0, count), part); });
  }
}

void Context::download(const BufferRange& source, void* destination) {
  auto* bytes = static_cast<char*>(destination);
  Buffer& staging = staging_buffer(std::min(source.bytes, staging_chunk));
  for (VkDeviceSize done = 0; done < source.bytes; done += staging_chunk) {
    VkDeviceSize count = std::min(staging_chunk, source.bytes - done);
    BufferRange part{source.buffer, source.offset + done, count, source.address + done};
    run([&](Recorder& recorder) { recorder.copy(part, staging.range(0, count)); });
    std::memcpy(bytes + done, staging.mapped(), count);
  }
}

}  // namespace vkt::vk
