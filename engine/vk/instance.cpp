#include "engine/vk/instance.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/vk/check.hpp"

namespace vkt::vk {
namespace {

constexpr const char* validation_layer = "VK_LAYER_KHRONOS_validation";

std::vector<VkExtensionProperties> instance_extensions() {
  uint32_t count = 0;
  vkEnumerateInstanceExtensionProperties(nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  vkEnumerateInstanceExtensionProperties(nullptr, &count, extensions.data());
  return extensions;
}

bool validation_layer_installed() {
  uint32_t count = 0;
  vkEnumerateInstanceLayerProperties(&count, nullptr);
  std::vector<VkLayerProperties> layers(count);
  vkEnumerateInstanceLayerProperties(&count, layers.data());
  return std::any_of(layers.begin(), layers.end(),
                     [](const VkLayerProperties& l) { return std::strcmp(l.layerName, validation_layer) == 0; });
}

}  // namespace

const char* const no_device_hint =
    "install a Vulkan driver: on Debian `apt-get install mesa-vulkan-drivers` gives the CPU driver "
    "(lavapipe); for a GPU install its vendor's Vulkan driver";

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::atoi(value) : fallback;
}

Instance::Instance(const InstanceOptions& options) : tally_(options.tally) {
  int validation = options.validation >= 0 ? options.validation : env_int("VKT_VALIDATION", 0);
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = options.application_name;
  app.apiVersion = options.api_version;
  VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  info.pApplicationInfo = &app;
  std::vector<const char*> extensions = options.extensions, layers;
  // MoltenVK lists its devices only to instances that ask for portability enumeration.
  if (has_extension(instance_extensions(), VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
    extensions.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
    info.flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }
  VkDebugUtilsMessengerCreateInfoEXT messenger_info{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
  VkValidationFeatureEnableEXT sync_validation = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  VkValidationFeaturesEXT validation_features{VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT};
  if (validation > 0) {
    if (!validation_layer_installed())
      throw UserError("VKT_VALIDATION is set but the Khronos validation layer is not installed",
                      "apt-get install vulkan-validationlayers, or unset VKT_VALIDATION");
    if (!tally_) throw std::logic_error("vk::Instance: validation needs a ValidationTally");
    layers.push_back(validation_layer);
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    messenger_info.messageSeverity =
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    messenger_info.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                                 VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                                 VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    messenger_info.pfnUserCallback = on_message;
    messenger_info.pUserData = this;
    // Chained here too, it also reports on vkCreateInstance / vkDestroyInstance themselves.
    info.pNext = &messenger_info;
    if (validation >= 2) {
      validation_features.enabledValidationFeatureCount = 1;
      validation_features.pEnabledValidationFeatures = &sync_validation;
      messenger_info.pNext = &validation_features;
    }
  }
  info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  info.enabledLayerCount = static_cast<uint32_t>(layers.size());
  info.ppEnabledLayerNames = layers.data();
  VkResult result = vkCreateInstance(&info, nullptr, &instance_);
  if (result == VK_ERROR_INCOMPATIBLE_DRIVER || result == VK_ERROR_INITIALIZATION_FAILED)
    throw UserError(std::string("no Vulkan driver could be loaded") + options.for_whom, no_device_hint);
  VK_CHECK(result);
  if (validation > 0) {
    auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
    messenger_info.pNext = nullptr;
    VkResult messenger_result = create(instance_, &messenger_info, nullptr, &messenger_);
    if (messenger_result != VK_SUCCESS) {
      // A destructor does not run for a constructor that throws.
      vkDestroyInstance(instance_, nullptr);
      VK_CHECK(messenger_result);
    }
  }
}

Instance::~Instance() {
  if (messenger_) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
    destroy(instance_, messenger_, nullptr);
  }
  if (instance_) vkDestroyInstance(instance_, nullptr);
}

VkBool32 Instance::on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT,
                              const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  auto* instance = static_cast<Instance*>(user);
  ValidationTally& tally = *instance->tally_;
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    instance->errors_++;
    tally.errors++;
    log::error(std::string(tally.log_label) + ": " + data->pMessage);
  } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
    instance->warnings_++;
    if (tally.warnings++ < tally.max_logged_warnings) log::warn(std::string(tally.log_label) + ": " + data->pMessage);
  }
  return VK_FALSE;
}

std::vector<VkPhysicalDevice> physical_devices(VkInstance instance) {
  uint32_t count = 0;
  VK_CHECK(vkEnumeratePhysicalDevices(instance, &count, nullptr));
  std::vector<VkPhysicalDevice> devices(count);
  VK_CHECK(vkEnumeratePhysicalDevices(instance, &count, devices.data()));
  return devices;
}

std::vector<VkExtensionProperties> device_extensions(VkPhysicalDevice device) {
  uint32_t count = 0;
  vkEnumerateDeviceExtensionProperties(device, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  vkEnumerateDeviceExtensionProperties(device, nullptr, &count, extensions.data());
  return extensions;
}

bool has_extension(const std::vector<VkExtensionProperties>& extensions, const char* name) {
  return std::any_of(extensions.begin(), extensions.end(),
                     [&](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

int device_type_rank(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return 1;
    default:
      return 0;
  }
}

int best_device(const std::vector<VkPhysicalDevice>& devices,
                const std::function<bool(uint32_t index, VkPhysicalDevice device)>& accept) {
  int best = -1, best_rank = -1;
  for (uint32_t i = 0; i < devices.size(); i++) {
    if (accept && !accept(i, devices[i])) continue;
    VkPhysicalDeviceProperties properties;
    vkGetPhysicalDeviceProperties(devices[i], &properties);
    int rank = device_type_rank(properties.deviceType);
    if (rank > best_rank) {
      best_rank = rank;
      best = static_cast<int>(i);
    }
  }
  return best;
}

VkDevice create_device_with_one_queue(VkPhysicalDevice physical_device, uint32_t queue_family,
                                      std::vector<const char*> extensions, const void* features) {
  float priority = 1.0f;
  VkDeviceQueueCreateInfo queue_info{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  queue_info.queueFamilyIndex = queue_family;
  queue_info.queueCount = 1;
  queue_info.pQueuePriorities = &priority;
  if (has_extension(device_extensions(physical_device), "VK_KHR_portability_subset"))
    extensions.push_back("VK_KHR_portability_subset");
  VkDeviceCreateInfo info{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  info.pNext = features;
  info.queueCreateInfoCount = 1;
  info.pQueueCreateInfos = &queue_info;
  info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  VkDevice device = VK_NULL_HANDLE;
  VK_CHECK(vkCreateDevice(physical_device, &info, nullptr, &device));
  return device;
}

VkCommandPool create_command_pool(VkDevice device, uint32_t queue_family) {
  VkCommandPoolCreateInfo info{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  info.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  info.queueFamilyIndex = queue_family;
  VkCommandPool pool = VK_NULL_HANDLE;
  VK_CHECK(vkCreateCommandPool(device, &info, nullptr, &pool));
  return pool;
}

}  // namespace vkt::vk
