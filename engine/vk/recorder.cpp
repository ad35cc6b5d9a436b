#include "engine/vk/recorder.hpp"

#include "engine/base/error.hpp"
#include "engine/vk/check.hpp"
#include "engine/vk/context.hpp"

namespace vkt::vk {
namespace {
constexpr VkPipelineStageFlags work_stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
constexpr VkAccessFlags work_writes = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
constexpr VkAccessFlags work_accesses =
    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
constexpr uint32_t max_profiled_dispatches = 8192;
}  // namespace

Sequence::Sequence(Context& context, bool profiling) : context_(context) {
  VkCommandBufferAllocateInfo info{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  info.commandPool = context.command_pool();
  info.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  info.commandBufferCount = 1;
  VK_CHECK(vkAllocateCommandBuffers(context.device(), &info, &command_buffer_));
  if (profiling && context.caps().timestamps) {
    query_capacity_ = 2 * max_profiled_dispatches;
    VkQueryPoolCreateInfo pool_info{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    pool_info.queryType = VK_QUERY_TYPE_TIMESTAMP;
    pool_info.queryCount = query_capacity_;
    VK_CHECK(vkCreateQueryPool(context.device(), &pool_info, nullptr, &query_pool_));
  }
}

Sequence::~Sequence() {
  if (query_pool_) vkDestroyQueryPool(context_.device(), query_pool_, nullptr);
  vkFreeCommandBuffers(context_.device(), context_.command_pool(), 1, &command_buffer_);
}

void Sequence::record(const std::function<void(Recorder&)>& body) {
  VK_CHECK(vkResetCommandBuffer(command_buffer_, 0));
  VkCommandBufferBeginInfo begin{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  VK_CHECK(vkBeginCommandBuffer(command_buffer_, &begin));
  labels_.clear();
  dispatch_count_ = barrier_count_ = 0;
  if (query_pool_) vkCmdResetQueryPool(command_buffer_, query_pool_, 0, query_capacity_);
  Recorder recorder(context_, *this);
  body(recorder);
  // Make every write visible to the host once the submission's fence signals.
  VkMemoryBarrier to_host{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  to_host.srcAccessMask = work_writes;
  to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(command_buffer_, work_stages, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host, 0, nullptr, 0,
                       nullptr);
  VK_CHECK(vkEndCommandBuffer(command_buffer_));
}

std::vector<KernelTiming> Sequence::timings() const {
  std::vector<KernelTiming> result;
  if (!query_pool_ || labels_.empty()) return result;
  std::vector<uint64_t> stamps(labels_.size() * 2);
  VK_CHECK(vkGetQueryPoolResults(context_.device(), query_pool_, 0, static_cast<uint32_t>(stamps.size()),
                                 stamps.size() * 8, stamps.data(), 8, VK_QUERY_RESULT_64_BIT));
  double period_ms = context_.caps().timestamp_period_ns * 1e-6;
  for (size_t i = 0; i < labels_.size(); i++)
    result.push_back({labels_[i], static_cast<double>(stamps[2 * i + 1] - stamps[2 * i]) * period_ms});
  return result;
}

Recorder::Recorder(Context& context, Sequence& sequence) : context_(context), sequence_(sequence) {}

void Recorder::barrier() {
  VkMemoryBarrier memory_barrier{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  memory_barrier.srcAccessMask = work_writes;
  memory_barrier.dstAccessMask = work_accesses;
  vkCmdPipelineBarrier(sequence_.command_buffer_, work_stages, work_stages, 0, 1, &memory_barrier, 0, nullptr, 0,
                       nullptr);
  sequence_.barrier_count_++;
  pending_reads_.clear();
  pending_writes_.clear();
}

void Recorder::before(const BufferRange* reads, size_t read_count, const BufferRange* writes, size_t write_count) {
  bool hazard = false;
  for (size_t i = 0; i < read_count && !hazard; i++)
    for (const BufferRange& written : pending_writes_)
      if (written.overlaps(reads[i])) {
        hazard = true;
        break;
      }  // read after write
  for (size_t i = 0; i < write_count && !hazard; i++) {
    for (const BufferRange& written : pending_writes_)
      if (written.overlaps(writes[i])) {
        hazard = true;
        break;
      }  // write after write
    for (const BufferRange& read : pending_reads_)
      if (!hazard && read.overlaps(writes[i])) {
        hazard = true;
        break;
      }  // write after read
  }
  if (hazard) barrier();
  pending_reads_.insert(pending_reads_.end(), reads, reads + read_count);
  pending_writes_.insert(pending_writes_.end(), writes, writes + write_count);
}

void Recorder::dispatch(const Pipeline& pipeline, const void* push, uint32_t push_bytes, uint32_t groups_x,
                        uint32_t groups_y, uint32_t groups_z, std::initializer_list<BufferRange> reads,
                        std::initializer_list<BufferRange> writes, const char* label) {
  dispatch(pipeline, push, push_bytes, groups_x, groups_y, groups_z, std::vector<BufferRange>(reads),
           std::vector<BufferRange>(writes), label);
}

void Recorder::dispatch(const Pipeline& pipeline, const void* push, uint32_t push_bytes, uint32_t groups_x,
                        uint32_t groups_y, uint32_t groups_z, const std::vector<BufferRange>& reads,
                        const std::vector<BufferRange>& writes, const char* label) {
  VKT_ASSERT(push_bytes <= context_.push_constant_bytes(), pipeline.name + ": push constants too large");
  const auto& limits = context_.caps().max_workgroup_count;
  VKT_ASSERT(groups_x <= limits[0] && groups_y <= limits[1] && groups_z <= limits[2],
             pipeline.name + ": too many workgroups");
  if (groups_x == 0 || groups_y == 0 || groups_z == 0) return;
  before(reads.data(), reads.size(), writes.data(), writes.size());
  VkCommandBuffer cmd = sequence_.command_buffer_;
  vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle);
  if (push_bytes) vkCmdPushConstants(cmd, context_.pipeline_layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  bool profiled = sequence_.query_pool_ && sequence_.labels_.size() * 2 < sequence_.query_capacity_;
  uint32_t query = static_cast<uint32_t>(sequence_.labels_.size() * 2);
  if (profiled) vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, sequence_.query_pool_, query);
  vkCmdDispatch(cmd, groups_x, groups_y, groups_z);
  if (profiled) {
    vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, sequence_.query_pool_, query + 1);
    sequence_.labels_.push_back(label ? label : pipeline.name);
  }
  sequence_.dispatch_count_++;
}

void Recorder::copy(const BufferRange& source, const BufferRange& destination) {
  VKT_ASSERT(source.bytes == destination.bytes, "copy between ranges of different sizes");
  before(&source, 1, &destination, 1);
  VkBufferCopy region{source.offset, destination.offset, source.bytes};
  vkCmdCopyBuffer(sequence_.command_buffer_, source.buffer, destination.buffer, 1, &region);
}

void Recorder::fill(const BufferRange& destination, uint32_t value) {
  VKT_ASSERT(destination.offset % 4 == 0 && destination.bytes % 4 == 0, "fill needs 4-byte aligned ranges");
  before(nullptr, 0, &destination, 1);
  vkCmdFillBuffer(sequence_.command_buffer_, destination.buffer, destination.offset, destination.bytes, value);
}

}  // namespace vkt::vk
