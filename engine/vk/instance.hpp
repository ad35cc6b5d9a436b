#pragma once
// Vulkan bring-up shared by the compute engine (vk::Context) and the dashboard (ui's
// GraphicsContext): the instance with the extensions a caller asks for, the validation layers
// and a messenger that counts what they report, physical-device ranking, and device creation
// with one queue. Each caller still picks its own queue family and features.
#include <vulkan/vulkan.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vkt::vk {

// The integer value of environment variable `name`, or `fallback` when unset or empty.
int env_int(const char* name, int fallback);

// What the validation layers reported to one user of Vulkan in this process (the engine, the
// dashboard), over all its instances, including messages while an instance is destroyed.
// Each user has its own, so a test can expect errors from one without hiding the other's.
struct ValidationTally {
  const char* log_label;         // log lines read "<log_label>: <message>"
  uint32_t max_logged_warnings;  // a warning in a frame loop repeats every frame: log the first few
  std::atomic<uint32_t> errors{0};
  std::atomic<uint32_t> warnings{0};
};

struct InstanceOptions {
  const char* application_name = "vktune";
  uint32_t api_version = VK_API_VERSION_1_3;
  // Beyond what is added here (portability enumeration where present, debug utils with
  // validation): e.g. what GLFW needs for a window surface.
  std::vector<const char*> extensions;
  // -1: VKT_VALIDATION; 1 = validation layers, 2 = also synchronization checks.
  int validation = -1;
  ValidationTally* tally = nullptr;  // required when validation is on
  // Names the user in "no Vulkan driver could be loaded<for_whom>", e.g. " for the dashboard".
  const char* for_whom = "";
};

// A VkInstance and, with validation, its debug messenger. Not movable: the messenger keeps a
// pointer to it.
class Instance {
 public:
  explicit Instance(const InstanceOptions& options);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  VkInstance handle() const { return instance_; }
  bool validation_enabled() const { return messenger_ != VK_NULL_HANDLE; }
  // Messages reported to this instance alone (only counted when validation is on).
  uint32_t validation_errors() const { return errors_.load(); }
  uint32_t validation_warnings() const { return warnings_.load(); }

 private:
  static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                   VkDebugUtilsMessageTypeFlagsEXT,
                                                   const VkDebugUtilsMessengerCallbackDataEXT* data, void* user);

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  ValidationTally* tally_ = nullptr;
  std::atomic<uint32_t> errors_{0};
  std::atomic<uint32_t> warnings_{0};
};

// The hint every "no Vulkan device/driver" error carries.
extern const char* const no_device_hint;

std::vector<VkPhysicalDevice> physical_devices(VkInstance instance);
std::vector<VkExtensionProperties> device_extensions(VkPhysicalDevice device);
bool has_extension(const std::vector<VkExtensionProperties>& extensions, const char* name);

// discrete 4 > integrated 3 > virtual 2 > cpu 1 > other 0.
int device_type_rank(VkPhysicalDeviceType type);

// The position in `devices` of the best-ranked device (by type; the first among equals) that
// `accept` takes (every device when `accept` is empty), or -1 when it takes none.
int best_device(const std::vector<VkPhysicalDevice>& devices,
                const std::function<bool(uint32_t index, VkPhysicalDevice device)>& accept = {});

// Creates a device with one queue of `queue_family`, the `extensions` asked for plus
// VK_KHR_portability_subset where the driver has it (the spec requires enabling it then), and
// the feature chain `features` (may be null).
VkDevice create_device_with_one_queue(VkPhysicalDevice physical_device, uint32_t queue_family,
                                      std::vector<const char*> extensions, const void* features);

// A command pool on `queue_family` whose command buffers can be reset one by one.
VkCommandPool create_command_pool(VkDevice device, uint32_t queue_family);

}  // namespace vkt::vk
