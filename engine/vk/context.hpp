#pragma once
// The Vulkan context: instance (with validation on request, see instance.hpp), the chosen device
// and its capabilities, one compute queue, the allocator + ledger, the pipeline cache, and helpers
// for one-shot work (upload, download, run a recording).
#include <vulkan/vulkan.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/vk/capabilities.hpp"
#include "engine/vk/instance.hpp"
#include "engine/vk/memory.hpp"

namespace vkt::vk {

class PipelineCache;
class Recorder;
class Sequence;

// Validation errors seen by every Context of this process, including those reported while a
// Context is destroyed (leaked objects): what test runners check last.
uint32_t process_validation_errors();

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

  VkDevice device() const { return device_.handle; }
  VkPhysicalDevice physical_device() const { return device_.physical; }
  VkQueue queue() const { return device_.queue; }
  const Capabilities& caps() const { return caps_; }
  Allocator& allocator() { return *allocator_; }
  MemoryLedger& ledger() { return ledger_; }
  PipelineCache& pipelines() { return *pipelines_; }
  // Re-reads VK_EXT_memory_budget (budget and usage per heap).
  std::vector<MemoryHeapReport> memory_heaps() const;

  // Validation messages seen since start (only counted when validation is on).
  bool validation_enabled() const { return instance_.validation_enabled(); }
  uint32_t validation_errors() const { return instance_.validation_errors(); }
  uint32_t validation_warnings() const { return instance_.validation_warnings(); }

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

  VkCommandPool command_pool() const { return device_.command_pool; }
  VkPipelineLayout pipeline_layout() const { return pipeline_layout_; }
  uint32_t push_constant_bytes() const { return push_constant_bytes_; }

 private:
  void choose_device(int device_index);
  void create_device();
  Buffer& staging_buffer(VkDeviceSize bytes);

  Instance instance_;   // first: destroyed last, after the device
  QueueDevice device_;  // after the instance: destroyed before it
  VkFence fence_ = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout_ = VK_NULL_HANDLE;
  uint32_t push_constant_bytes_ = 128;
  Capabilities caps_;
  MemoryLedger ledger_;
  std::unique_ptr<Allocator> allocator_;
  std::unique_ptr<PipelineCache> pipelines_;
  std::unique_ptr<Sequence> one_shot_;
  Buffer staging_;
};

}  // namespace vkt::vk
