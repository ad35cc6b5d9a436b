#pragma once
// Recording compute work. A Sequence is a command buffer recorded once and submitted any
// number of times (the training step is recorded once and replayed). A Recorder appends
// dispatches and copies to it and inserts a barrier only where a command touches memory
// that an earlier command since the last barrier wrote (or reads what a later one writes).
#include <vulkan/vulkan.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/vk/memory.hpp"
#include "engine/vk/pipeline.hpp"

namespace vkt::vk {

class Context;

struct KernelTiming {
  std::string label;
  double milliseconds = 0;
};

class Sequence {
 public:
  // With `profiling`, every dispatch gets a pair of timestamp queries (when the device has them).
  explicit Sequence(Context& context, bool profiling = false);
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // Records the whole sequence (replacing an earlier recording).
  void record(const std::function<void(class Recorder&)>& body);
  VkCommandBuffer command_buffer() const { return command_buffer_; }
  uint32_t dispatch_count() const { return dispatch_count_; }
  uint32_t barrier_count() const { return barrier_count_; }
  // GPU time of each dispatch of the last completed submission (empty without profiling).
  std::vector<KernelTiming> timings() const;

 private:
  friend class Recorder;
  Context& context_;
  VkCommandBuffer command_buffer_ = VK_NULL_HANDLE;
  VkQueryPool query_pool_ = VK_NULL_HANDLE;
  uint32_t query_capacity_ = 0;
  std::vector<std::string> labels_;
  uint32_t dispatch_count_ = 0, barrier_count_ = 0;
};

class Recorder {
 public:
  Recorder(Context& context, Sequence& sequence);

  // `push` is copied at record time. reads/writes name every range the shader touches: they
  // decide the barriers.
  void dispatch(const Pipeline& pipeline, const void* push, uint32_t push_bytes, uint32_t groups_x, uint32_t groups_y,
                uint32_t groups_z, std::initializer_list<BufferRange> reads, std::initializer_list<BufferRange> writes,
                const char* label = nullptr);
  void dispatch(const Pipeline& pipeline, const void* push, uint32_t push_bytes, uint32_t groups_x, uint32_t groups_y,
                uint32_t groups_z, const std::vector<BufferRange>& reads, const std::vector<BufferRange>& writes,
                const char* label = nullptr);
  void copy(const BufferRange& source, const BufferRange& destination);
  // Writes a repeated 32-bit value (0 clears). Offset and size must be multiples of 4.
  void fill(const BufferRange& destination, uint32_t value = 0);
  // An unconditional barrier between everything before and everything after.
  void barrier();

  Context& context() { return context_; }

 private:
  void before(const BufferRange* reads, size_t read_count, const BufferRange* writes, size_t write_count);
  Context& context_;
  Sequence& sequence_;
  std::vector<BufferRange> pending_reads_;   // read since the last barrier
  std::vector<BufferRange> pending_writes_;  // written since the last barrier
};

}  // namespace vkt::vk
