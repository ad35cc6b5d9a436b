#include "engine/vk/memory.hpp"

#include <algorithm>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/vk/check.hpp"

namespace vkt::vk {

const char* category_name(Category category) {
  static const char* names[] = {"base_weights",   "quantized_weights", "adapter_params", "gradients", "optimizer_state",
                                "master_weights", "activations",       "workspace",      "kv_cache",  "staging"};
  return names[static_cast<size_t>(category)];
}

const char* memory_kind_name(MemoryKind kind) {
  static const char* names[] = {"device", "staging", "offload"};
  return names[static_cast<size_t>(kind)];
}

uint64_t LedgerSnapshot::category_current(Category c) const {
  uint64_t sum = 0;
  for (uint64_t bytes : current[static_cast<size_t>(c)]) sum += bytes;
  return sum;
}
uint64_t LedgerSnapshot::category_peak(Category c) const {
  uint64_t sum = 0;
  for (uint64_t bytes : peak[static_cast<size_t>(c)]) sum += bytes;
  return sum;
}

void MemoryLedger::record_allocation(Category category, MemoryKind kind, uint64_t bytes) {
  std::lock_guard lock(mutex_);
  auto c = static_cast<size_t>(category), k = static_cast<size_t>(kind);
  state_.current[c][k] += bytes;
  state_.peak[c][k] = std::max(state_.peak[c][k], state_.current[c][k]);
  state_.total_current += bytes;
  state_.total_peak = std::max(state_.total_peak, state_.total_current);
  state_.allocation_count++;
}

void MemoryLedger::record_free(Category category, MemoryKind kind, uint64_t bytes) {
  std::lock_guard lock(mutex_);
  auto c = static_cast<size_t>(category), k = static_cast<size_t>(kind);
  VKT_ASSERT(state_.current[c][k] >= bytes, "ledger underflow");
  state_.current[c][k] -= bytes;
  state_.total_current -= bytes;
  state_.allocation_count--;
}

void MemoryLedger::record_driver_allocation(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  state_.driver_current += bytes;
  state_.driver_peak = std::max(state_.driver_peak, state_.driver_current);
}

void MemoryLedger::record_driver_free(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  state_.driver_current -= bytes;
}

void MemoryLedger::reset_peaks() {
  std::lock_guard lock(mutex_);
  state_.peak = state_.current;
  state_.total_peak = state_.total_current;
  state_.driver_peak = state_.driver_current;
}

void MemoryLedger::restore_peaks(const LedgerSnapshot& before) {
  std::lock_guard lock(mutex_);
  for (size_t c = 0; c < category_count; c++)
    for (size_t k = 0; k < memory_kind_count; k++)
      state_.peak[c][k] = std::max(before.peak[c][k], state_.current[c][k]);
  state_.total_peak = std::max(before.total_peak, state_.total_current);
  state_.driver_peak = std::max(before.driver_peak, state_.driver_current);
}

LedgerSnapshot MemoryLedger::snapshot() const {
  std::lock_guard lock(mutex_);
  return state_;
}

// ---------------------------------------------------------------------------------------------

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& other) noexcept { *this = std::move(other); }

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    allocator_ = other.allocator_;
    block_index_ = other.block_index_;
    vk_buffer_ = other.vk_buffer_;
    offset_ = other.offset_;
    reserved_ = other.reserved_;
    size_ = other.size_;
    address_ = other.address_;
    mapped_ = other.mapped_;
    category_ = other.category_;
    kind_ = other.kind_;
    name_ = std::move(other.name_);
    other.allocator_ = nullptr;
  }
  return *this;
}

void Buffer::release() {
  if (allocator_) allocator_->free(*this);
  allocator_ = nullptr;
}

BufferRange Buffer::range(VkDeviceSize offset, VkDeviceSize bytes) const {
  VKT_ASSERT(offset + bytes <= size_, "range outside buffer " + name_);
  return {vk_buffer_, offset_ + offset, bytes, address_ + offset};
}

// ---------------------------------------------------------------------------------------------

namespace {
// Picks the first memory type that has all `required` flags, preferring those with `preferred`
// and without `avoided`, on the largest heap.
MemoryTypeChoice choose_memory_type(const VkPhysicalDeviceMemoryProperties& properties, VkMemoryPropertyFlags required,
                                    VkMemoryPropertyFlags preferred, VkMemoryPropertyFlags avoided) {
  int best = -1;
  int64_t best_score = -1;
  for (uint32_t i = 0; i < properties.memoryTypeCount; i++) {
    VkMemoryPropertyFlags flags = properties.memoryTypes[i].propertyFlags;
    if ((flags & required) != required) continue;
    int64_t score = 0;
    if ((flags & preferred) == preferred) score += 4;
    if ((flags & avoided) == 0) score += 2;
    // Larger heap breaks ties (the 256 MiB BAR window vs the whole VRAM).
    score = score * (1ll << 40) +
            static_cast<int64_t>(properties.memoryHeaps[properties.memoryTypes[i].heapIndex].size >> 20);
    if (score > best_score) {
      best_score = score;
      best = static_cast<int>(i);
    }
  }
  if (best < 0) throw UserError("the Vulkan device has no suitable memory type", "update the Vulkan driver");
  return {static_cast<uint32_t>(best), properties.memoryTypes[best].propertyFlags};
}
}  // namespace

Allocator::Allocator(VkPhysicalDevice physical_device, VkDevice device, MemoryLedger& ledger,
                     VkDeviceSize max_allocation_size)
    : device_(device), ledger_(ledger), max_allocation_size_(max_allocation_size) {
  VkPhysicalDeviceMemoryProperties properties;
  vkGetPhysicalDeviceMemoryProperties(physical_device, &properties);
  constexpr auto device_local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  constexpr auto host_visible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  types_[static_cast<size_t>(MemoryKind::device)] = choose_memory_type(properties, device_local, 0, 0);
  types_[static_cast<size_t>(MemoryKind::staging)] =
      choose_memory_type(properties, host_visible, VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
  types_[static_cast<size_t>(MemoryKind::offload)] = choose_memory_type(properties, host_visible, 0, device_local);
}

Allocator::~Allocator() {
  for (Block& block : blocks_)
    if (block.alive()) destroy_block(block);
}

size_t Allocator::block_count() const {
  std::lock_guard lock(mutex_);
  return static_cast<size_t>(std::count_if(blocks_.begin(), blocks_.end(), [](const Block& b) { return b.alive(); }));
}

uint32_t Allocator::create_block(MemoryKind kind, VkDeviceSize size, bool dedicated) {
  if (size > max_allocation_size_)
    throw UserError("a tensor of " + format_bytes(static_cast<double>(size)) +
                        " exceeds the device's maxMemoryAllocationSize of " +
                        format_bytes(static_cast<double>(max_allocation_size_)),
                    "use a quantized base (--quant nf4) or a device with larger allocations");
  const MemoryTypeChoice& type = memory_type(kind);
  Block block;
  block.size = size;
  block.kind = kind;
  block.dedicated = dedicated;

  VkBufferCreateInfo buffer_info{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  buffer_info.size = size;
  buffer_info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                      VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
  buffer_info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VK_CHECK(vkCreateBuffer(device_, &buffer_info, nullptr, &block.buffer));
  VkMemoryRequirements requirements;
  vkGetBufferMemoryRequirements(device_, block.buffer, &requirements);
  if (!(requirements.memoryTypeBits & (1u << type.type_index))) {
    vkDestroyBuffer(device_, block.buffer, nullptr);
    throw UserError(std::string("the chosen memory type cannot hold storage buffers (") + memory_kind_name(kind) + ")",
                    "report this device to the vktune developers");
  }
  VkMemoryAllocateFlagsInfo flags_info{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO};
  flags_info.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
  VkMemoryAllocateInfo allocate_info{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  allocate_info.pNext = &flags_info;
  allocate_info.allocationSize = requirements.size;
  allocate_info.memoryTypeIndex = type.type_index;
  VkResult result = vkAllocateMemory(device_, &allocate_info, nullptr, &block.memory);
  if (result != VK_SUCCESS) {
    vkDestroyBuffer(device_, block.buffer, nullptr);
    VK_CHECK(result);
  }
  VK_CHECK(vkBindBufferMemory(device_, block.buffer, block.memory, 0));
  if (type.host_visible()) VK_CHECK(vkMapMemory(device_, block.memory, 0, VK_WHOLE_SIZE, 0, &block.mapped));
  VkBufferDeviceAddressInfo address_info{VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO};
  address_info.buffer = block.buffer;
  block.address = vkGetBufferDeviceAddress(device_, &address_info);
  block.free[0] = size;
  ledger_.record_driver_allocation(requirements.size);
  block.size = size;

  for (uint32_t i = 0; i < blocks_.size(); i++)
    if (!blocks_[i].alive()) {
      blocks_[i] = std::move(block);
      return i;
    }
  blocks_.push_back(std::move(block));
  return static_cast<uint32_t>(blocks_.size() - 1);
}

void Allocator::destroy_block(Block& block) {
  VkMemoryRequirements requirements;
  vkGetBufferMemoryRequirements(device_, block.buffer, &requirements);
  if (block.mapped) vkUnmapMemory(device_, block.memory);
  vkDestroyBuffer(device_, block.buffer, nullptr);
  vkFreeMemory(device_, block.memory, nullptr);
  ledger_.record_driver_free(requirements.size);
  block = Block{};
}

Buffer Allocator::allocate(VkDeviceSize bytes, Category category, MemoryKind kind, std::string name) {
  VKT_ASSERT(bytes > 0, "zero-byte allocation " + name);
  VkDeviceSize reserved = (bytes + alignment - 1) / alignment * alignment;
  std::lock_guard lock(mutex_);
  uint32_t block_index = UINT32_MAX;
  VkDeviceSize offset = 0;
  // Tensors of half a block or more get their own allocation so that big blocks are not wasted.
  if (reserved >= default_block_size / 2) {
    block_index = create_block(kind, reserved, true);
    blocks_[block_index].free.clear();
  } else {
    for (uint32_t i = 0; i < blocks_.size() && block_index == UINT32_MAX; i++) {
      Block& block = blocks_[i];
      if (!block.alive() || block.dedicated || block.kind != kind) continue;
      for (auto it = block.free.begin(); it != block.free.end(); ++it) {
        if (it->second < reserved) continue;
        offset = it->first;
        VkDeviceSize remaining = it->second - reserved;
        block.free.erase(it);
        if (remaining > 0) block.free[offset + reserved] = remaining;
        block_index = i;
        break;
      }
    }
    if (block_index == UINT32_MAX) {
      block_index = create_block(kind, std::min(default_block_size, max_allocation_size_), false);
      Block& block = blocks_[block_index];
      block.free.clear();
      if (block.size > reserved) block.free[reserved] = block.size - reserved;
      offset = 0;
    }
  }
  Block& block = blocks_[block_index];
  Buffer buffer;
  buffer.allocator_ = this;
  buffer.block_index_ = block_index;
  buffer.vk_buffer_ = block.buffer;
  buffer.offset_ = offset;
  buffer.reserved_ = reserved;
  buffer.size_ = bytes;
  buffer.address_ = block.address + offset;
  buffer.mapped_ = block.mapped ? static_cast<char*>(block.mapped) + offset : nullptr;
  buffer.category_ = category;
  buffer.kind_ = kind;
  buffer.name_ = std::move(name);
  ledger_.record_allocation(category, kind, bytes);
  return buffer;
}

void Allocator::free(Buffer& buffer) {
  std::lock_guard lock(mutex_);
  ledger_.record_free(buffer.category_, buffer.kind_, buffer.size_);
  Block& block = blocks_[buffer.block_index_];
  if (block.dedicated) {
    destroy_block(block);
    return;
  }
  // Return the range and merge it with free neighbours.
  VkDeviceSize offset = buffer.offset_, size = buffer.reserved_;
  auto next = block.free.lower_bound(offset);
  if (next != block.free.end() && offset + size == next->first) {
    size += next->second;
    next = block.free.erase(next);
  }
  if (next != block.free.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second == offset) {
      previous->second += size;
      size = 0;
    }
  }
  if (size > 0) block.free[offset] = size;
  // An empty block goes back to the driver so that freed memory is really freed.
  if (block.free.size() == 1 && block.free.begin()->first == 0 && block.free.begin()->second == block.size)
    destroy_block(block);
}

}  // namespace vkt::vk
