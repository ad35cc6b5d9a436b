#pragma once
// Compute pipelines, created once per (shader, specialization constants) and cached.
// All kernels share one pipeline layout: no descriptor sets, one push-constant range through
// which they receive buffer device addresses and sizes.
#include <vulkan/vulkan.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace vkt::vk {

struct Pipeline {
  VkPipeline handle = VK_NULL_HANDLE;
  std::string name;  // shader name, e.g. "matmul_f16"
};

class PipelineCache {
 public:
  PipelineCache(VkDevice device, VkPipelineLayout layout);
  ~PipelineCache();
  PipelineCache(const PipelineCache&) = delete;
  PipelineCache& operator=(const PipelineCache&) = delete;

  // Specialization constant i gets constant_id i (32-bit values; floats bit-cast by the caller).
  const Pipeline& get(const std::string& shader, std::span<const uint32_t> specialization = {});
  size_t size() const;
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  VkDevice device_;
  VkPipelineLayout layout_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::vector<uint32_t>>, std::unique_ptr<Pipeline>> pipelines_;
  std::map<std::string, VkShaderModule> modules_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace vkt::vk
