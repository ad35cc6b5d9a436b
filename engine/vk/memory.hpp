#pragma once
// Device memory: a sub-allocating allocator over large blocks, buffers addressed by device
// address (buffer_device_address), and the memory ledger that accounts every byte by category.
//
// Decision (documented in README, "Large tensors"): kernels reach tensors through 64-bit buffer
// device addresses passed in push constants, never through descriptor bindings. So the
// maxStorageBufferRange limit (128 MiB on lavapipe) does not apply: a tensor of any size up to
// maxMemoryAllocationSize is one contiguous range that shaders index directly.
#include <vulkan/vulkan.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vkt::vk {

// What an allocation is for; the ledger's rows, the planner's categories, the dashboard's bars.
enum class Category : uint8_t {
  base_weights,       // frozen or fully trained weights stored as fp32/fp16/bf16
  quantized_weights,  // NF4 / INT8 / INT4 codes with their scales
  adapter_params,     // LoRA A and B, modules_to_save copies, trainable token rows (fp32 master)
  gradients,          // gradients of trainable parameters
  optimizer_state,    // AdamW m and v, momentum
  master_weights,     // fp32 master copies of 16-bit trained weights (--method full --bf16/--fp16)
  activations,        // saved forward activations and their gradients
  workspace,          // scratch for kernels: logits chunks, reductions, attention statistics
  kv_cache,           // generation key/value cache
  staging,            // host-visible transfer buffers
  count
};
constexpr size_t category_count = static_cast<size_t>(Category::count);
const char* category_name(Category category);  // "base_weights", ...

// Where the memory lives.
enum class MemoryKind : uint8_t {
  device,   // device-local: fastest for kernels
  staging,  // host-visible and cached: uploads and readbacks
  offload,  // host memory that kernels read and write over the bus (offloaded optimizer states)
  count
};
constexpr size_t memory_kind_count = static_cast<size_t>(MemoryKind::count);
const char* memory_kind_name(MemoryKind kind);

// A piece of a buffer as kernels see it: the device address for shaders, the VkBuffer and
// offset for transfer commands, and the size for bounds and hazard tracking.
struct BufferRange {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize offset = 0;  // bytes from the start of `buffer`
  VkDeviceSize bytes = 0;
  VkDeviceAddress address = 0;  // device address of the first byte
  bool overlaps(const BufferRange& other) const {
    return address < other.address + other.bytes && other.address < address + bytes;
  }
};

// Bytes in use, now and at peak, by category and by memory kind, as requested by vktune
// (tensor bytes), plus the bytes the driver gave us in blocks (which include slack).
struct LedgerSnapshot {
  std::array<std::array<uint64_t, memory_kind_count>, category_count> current{};
  std::array<std::array<uint64_t, memory_kind_count>, category_count> peak{};
  uint64_t total_current = 0;
  uint64_t total_peak = 0;
  uint64_t driver_current = 0;  // sum of live VkDeviceMemory allocations
  uint64_t driver_peak = 0;
  uint64_t allocation_count = 0;  // live tensors
  uint64_t category_current(Category c) const;
  uint64_t category_peak(Category c) const;
};

class MemoryLedger {
 public:
  void record_allocation(Category category, MemoryKind kind, uint64_t bytes);
  void record_free(Category category, MemoryKind kind, uint64_t bytes);
  void record_driver_allocation(uint64_t bytes);
  void record_driver_free(uint64_t bytes);
  // Peaks restart from the current values (e.g. at the first training step).
  void reset_peaks();
  // Peaks back to `before` (a snapshot) once a transient allocation the plan does not list is freed
  // again (autotuning's scratch output, engine/kernels/autotune.hpp).
  void restore_peaks(const LedgerSnapshot& before);
  LedgerSnapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  LedgerSnapshot state_;
};

class Allocator;

// A buffer owned by vktune: move-only, returned to its block when destroyed.
class Buffer {
 public:
  Buffer() = default;
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  bool valid() const { return allocator_ != nullptr; }
  VkDeviceSize size() const { return size_; }
  VkDeviceAddress address() const { return address_; }
  // Host pointer when the memory is host-visible (staging, offload, or device memory on
  // unified-memory devices such as lavapipe); nullptr otherwise.
  void* mapped() const { return mapped_; }
  template <class T>
  T* mapped_as() const {
    return static_cast<T*>(mapped_);
  }
  Category category() const { return category_; }
  MemoryKind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  BufferRange range() const { return {vk_buffer_, offset_, size_, address_}; }
  BufferRange range(VkDeviceSize offset, VkDeviceSize bytes) const;
  VkBuffer vk_buffer() const { return vk_buffer_; }
  VkDeviceSize offset() const { return offset_; }

 private:
  friend class Allocator;
  void release();
  Allocator* allocator_ = nullptr;
  uint32_t block_index_ = 0;
  VkBuffer vk_buffer_ = VK_NULL_HANDLE;
  VkDeviceSize offset_ = 0;    // offset in the block's VkBuffer
  VkDeviceSize reserved_ = 0;  // bytes taken from the block (size rounded up to alignment)
  VkDeviceSize size_ = 0;      // bytes requested
  VkDeviceAddress address_ = 0;
  void* mapped_ = nullptr;
  Category category_ = Category::workspace;
  MemoryKind kind_ = MemoryKind::device;
  std::string name_;
};

struct MemoryTypeChoice {
  uint32_t type_index = 0;
  VkMemoryPropertyFlags flags = 0;
  bool host_visible() const { return flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT; }
};

// Sub-allocates tensors from large VkDeviceMemory blocks (one VkBuffer per block) so that a
// model with thousands of tensors stays far below maxMemoryAllocationCount.
class Allocator {
 public:
  Allocator(VkPhysicalDevice physical_device, VkDevice device, MemoryLedger& ledger, VkDeviceSize max_allocation_size);
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  Buffer allocate(VkDeviceSize bytes, Category category, MemoryKind kind, std::string name);
  const MemoryTypeChoice& memory_type(MemoryKind kind) const { return types_[static_cast<size_t>(kind)]; }
  // Number of live VkDeviceMemory objects (blocks and dedicated allocations).
  size_t block_count() const;

  static constexpr VkDeviceSize alignment = 256;
  static constexpr VkDeviceSize default_block_size = 64ull << 20;

 private:
  friend class Buffer;
  struct Block {
    VkDeviceMemory memory = VK_NULL_HANDLE;
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceSize size = 0;
    VkDeviceAddress address = 0;
    void* mapped = nullptr;
    MemoryKind kind = MemoryKind::device;
    bool dedicated = false;                     // holds exactly one buffer; freed with it
    std::map<VkDeviceSize, VkDeviceSize> free;  // offset -> size of each free range
    bool alive() const { return memory != VK_NULL_HANDLE; }
  };
  void free(Buffer& buffer);
  uint32_t create_block(MemoryKind kind, VkDeviceSize size, bool dedicated);
  void destroy_block(Block& block);

  VkDevice device_;
  MemoryLedger& ledger_;
  VkDeviceSize max_allocation_size_;
  std::array<MemoryTypeChoice, memory_kind_count> types_{};
  mutable std::mutex mutex_;
  std::vector<Block> blocks_;
};

}  // namespace vkt::vk
