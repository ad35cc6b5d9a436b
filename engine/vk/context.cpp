#include "engine/vk/context.hpp"

#include <algorithm>
#include <cstring>

#include "engine/base/error.hpp"
#include "engine/base/log.hpp"
#include "engine/vk/check.hpp"
#include "engine/vk/coopmat.hpp"
#include "engine/vk/pipeline.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::vk {
namespace {

// Every Context of this process counts here, including messages reported while a Context is
// destroyed (leaked objects): what test runners check last.
ValidationTally engine_validation{"vulkan validation", UINT32_MAX};

InstanceOptions engine_instance_options(int validation) {
  InstanceOptions options;
  options.validation = validation;  // -1: VKT_VALIDATION
  options.tally = &engine_validation;
  return options;
}

}  // namespace

uint32_t process_validation_errors() { return engine_validation.errors.load(); }

Context::Context(ContextOptions options) : instance_(engine_instance_options(options.validation)) {
  choose_device(options.device_index >= 0 ? options.device_index : env_int("VKT_DEVICE", -1));
  create_device();
  if (options.log_capabilities) log::info(caps_.summary_line() + compute_extensions(*this).summary());
}

void Context::choose_device(int device_index) {
  auto devices = physical_devices(instance_.handle());
  if (devices.empty()) throw UserError("no Vulkan device found", no_device_hint);
  if (device_index >= 0) {
    if (device_index >= static_cast<int>(devices.size()))
      throw UserError("--device " + std::to_string(device_index) + " does not exist: there are " +
                          std::to_string(devices.size()) + " Vulkan devices",
                      "`vktune devices` lists them");
    device_.physical = devices[device_index];
    caps_ = query_capabilities(device_.physical, static_cast<uint32_t>(device_index));
    if (!caps_.usable())
      throw UserError("device " + std::to_string(device_index) + " (" + caps_.name +
                          ") lacks Vulkan 1.2 buffer device addresses or 64-bit integers, which vktune needs",
                      "update its driver or choose another with --device N (`vktune devices`)");
    return;
  }
  std::vector<Capabilities> caps(devices.size());
  int best = best_device(devices, [&](uint32_t index, VkPhysicalDevice device) {
    caps[index] = query_capabilities(device, index);
    return caps[index].usable();
  });
  if (best < 0)
    throw UserError("no Vulkan device supports Vulkan 1.2 with buffer device addresses and 64-bit integers",
                    no_device_hint);
  device_.physical = devices[best];
  caps_ = caps[best];
}

void Context::create_device() {
  uint32_t family_count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(device_.physical, &family_count, nullptr);
  std::vector<VkQueueFamilyProperties> families(family_count);
  vkGetPhysicalDeviceQueueFamilyProperties(device_.physical, &family_count, families.data());
  // Prefer a compute queue family without graphics (an async compute queue), else any compute one.
  int chosen = -1;
  for (uint32_t i = 0; i < family_count; i++) {
    bool compute = families[i].queueFlags & VK_QUEUE_COMPUTE_BIT;
    bool graphics = families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT;
    if (compute && (chosen < 0 || !graphics)) chosen = static_cast<int>(i);
    if (compute && !graphics) break;
  }
  if (chosen < 0) throw UserError("device " + caps_.name + " has no compute queue", "choose another with --device N");
  const uint32_t queue_family = static_cast<uint32_t>(chosen);
  if (families[queue_family].timestampValidBits == 0) caps_.timestamps = false;

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
  // The matrix units and subgroup sizes, enabled only where offered (engine/vk/coopmat.hpp).
  ComputeExtensions optional = query_compute_extensions(instance_.handle(), device_.physical);
  VkPhysicalDeviceCooperativeMatrixFeaturesKHR coopmat{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR};
  VkPhysicalDeviceSubgroupSizeControlFeatures size_control{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES};
  std::vector<const char*> extensions;
  void** tail = &features12.pNext;
  if (optional.cooperative_matrix_khr) {
    coopmat.cooperativeMatrix = VK_TRUE;
    features12.vulkanMemoryModel = VK_TRUE;
    extensions.push_back(VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME);
    *tail = &coopmat;
    tail = &coopmat.pNext;
  }
  if (optional.subgroup_size_control) {
    size_control.subgroupSizeControl = VK_TRUE;
    size_control.computeFullSubgroups = optional.compute_full_subgroups;
    if (optional.subgroup_size_control_extension) extensions.push_back(VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
    *tail = &size_control;
  }
  if (caps_.memory_budget) extensions.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  device_.create(queue_family, extensions, &features);
  remember_compute_extensions(device_.handle, optional);
  VkFenceCreateInfo fence_info{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VK_CHECK(vkCreateFence(device_.handle, &fence_info, nullptr, &fence_));

  VkPushConstantRange push_range{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_constant_bytes_};
  VkPipelineLayoutCreateInfo layout_info{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  layout_info.pushConstantRangeCount = 1;
  layout_info.pPushConstantRanges = &push_range;
  VK_CHECK(vkCreatePipelineLayout(device_.handle, &layout_info, nullptr, &pipeline_layout_));

  allocator_ = std::make_unique<Allocator>(device_.physical, device_.handle, ledger_, caps_.max_memory_allocation_size);
  pipelines_ = std::make_unique<PipelineCache>(device_.handle, pipeline_layout_);
  one_shot_ = std::make_unique<Sequence>(*this);
}

Context::~Context() {
  if (device_.handle) vkDeviceWaitIdle(device_.handle);
  forget_compute_extensions(device_.handle);
  staging_ = Buffer();
  one_shot_.reset();
  pipelines_.reset();
  allocator_.reset();
  if (pipeline_layout_) vkDestroyPipelineLayout(device_.handle, pipeline_layout_, nullptr);
  if (fence_) vkDestroyFence(device_.handle, fence_, nullptr);
}

std::vector<MemoryHeapReport> Context::memory_heaps() const {
  return query_capabilities(device_.physical, caps_.index).heaps;
}

void Context::submit(std::initializer_list<Sequence*> sequences) {
  std::vector<VkCommandBuffer> buffers;
  for (Sequence* sequence : sequences) buffers.push_back(sequence->command_buffer());
  VkSubmitInfo submit_info{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  submit_info.commandBufferCount = static_cast<uint32_t>(buffers.size());
  submit_info.pCommandBuffers = buffers.data();
  VK_CHECK(vkQueueSubmit(device_.queue, 1, &submit_info, fence_));
  VK_CHECK(vkWaitForFences(device_.handle, 1, &fence_, VK_TRUE, UINT64_MAX));
  VK_CHECK(vkResetFences(device_.handle, 1, &fence_));
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
