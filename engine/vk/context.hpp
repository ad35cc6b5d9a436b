#pragma once
// The Vulkan context: instance (with validation on request), the chosen device and its
// capabilities, one compute queue, the allocator + ledger, the pipeline cache, and helpers
// for one-shot work (upload, download, run a recording).
#include <vulkan/vulkan.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/vk/memory.hpp"

namespace vkt::vk {

class PipelineCache;
class Recorder;
class Sequence;

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

// Validation errors seen by every Context of this process, including those reported while a
// Context is destroyed (leaked objects): what test runners check last.
uint32_t process_validation_errors();

// Reads every device's capabilities (a temporary instance, no device created).
std::vector<Capabilities> list_devices();

struct ContextOptions {
  int device_index = -1;  // -1: VKT_DEVICE, else the best device (discrete > integrated > virtual > cpu)
  int validation = -1;    // -1: VKT_VALIDATION (1 = validation layers, 2 = also synchronization checks)
  bool log_capabilities = true;
};

class Context {
 public:
  explicit Context(ContextOptions options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  VkDevice device() const { return device_; }
  VkPhysicalDevice physical_device() const { return physical_device_; }
  VkQueue queue() const { return queue_; }
  const Capabilities& caps() const { return caps_; }
  Allocator& allocator() { return *allocator_; }
  MemoryLedger& ledger() { return ledger_; }
  PipelineCache& pipelines() { return *pipelines_; }
  // Re-reads VK_EXT_memory_budget (budget and usage per heap).
  std::vector<MemoryHeapReport> memory_heaps() const;

  // Validation messages seen since start (only counted when validation is on).
  bool validation_enabled() const { return validation_enabled_; }
  uint32_t validation_errors() const { return validation_errors_.load(); }
  uint32_t validation_warnings() const { return validation_warnings_.load(); }

  Buffer allocate(VkDeviceSize bytes, Category category, std::string name, MemoryKind kind = MemoryKind::device) {
    return allocator_->allocate(bytes, category, kind, std::move(name));
  }
  // Host -> buffer and buffer -> host copies through a staging buffer; both wait for completion.
  // The Buffer overloads memcpy directly when the buffer is host-visible (lavapipe, unified
  // memory, offload memory); VKT_DISABLE_DIRECT_MAP=1 forces the staging path.
  void upload(const BufferRange& destination, const void* source);
  void download(const BufferRange& source, void* destination);
  void upload(const Buffer& destination, const void* source, VkDeviceSize offset = 0, VkDeviceSize bytes = 0);
  void download(const Buffer& source, void* destination, VkDeviceSize offset = 0, VkDeviceSize bytes = 0);

  // Records with `record`, submits, and waits: for setup work and tests.
  void run(const std::function<void(Recorder&)>& record);
  // Submits prerecorded sequences in order in one vkQueueSubmit and waits.
  void submit(std::initializer_list<Sequence*> sequences);

  VkCommandPool command_pool() const { return command_pool_; }
  VkPipelineLayout pipeline_layout() const { return pipeline_layout_; }
  uint32_t push_constant_bytes() const { return push_constant_bytes_; }

 private:
  friend VkBool32 debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT, VkDebugUtilsMessageTypeFlagsEXT,
                                 const VkDebugUtilsMessengerCallbackDataEXT*, void*);
  void create_instance(int validation);
  void choose_device(int device_index);
  void create_device();
  Buffer& staging_buffer(VkDeviceSize bytes);

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_device_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout_ = VK_NULL_HANDLE;
  uint32_t push_constant_bytes_ = 128;
  Capabilities caps_;
  MemoryLedger ledger_;
  std::unique_ptr<Allocator> allocator_;
  std::unique_ptr<PipelineCache> pipelines_;
  std::unique_ptr<Sequence> one_shot_;
  Buffer staging_;
  bool validation_enabled_ = false;
  std::atomic<uint32_t> validation_errors_{0};
  std::atomic<uint32_t> validation_warnings_{0};
};

}  // namespace vkt::vk
