#pragma once
// Allocates the buffers a memory plan lists (all of them, or those a filter keeps) and finds
// them by name: the model never sizes a buffer itself.
#include <functional>
#include <string>
#include <unordered_map>

#include "engine/plan/plan.hpp"
#include "engine/vk/context.hpp"

namespace vkt::model {

class BufferSet {
 public:
  BufferSet(vk::Context& context, const plan::MemoryPlan& plan,
            const std::function<bool(const plan::BufferSpec&)>& keep = nullptr);
  BufferSet(const BufferSet&) = delete;
  BufferSet& operator=(const BufferSet&) = delete;

  bool has(const std::string& name) const { return buffers_.count(name) != 0; }
  vk::Buffer& buffer(const std::string& name);  // VKT_ASSERT when absent
  const vk::Buffer& buffer(const std::string& name) const;
  vk::BufferRange range(const std::string& name) const { return buffer(name).range(); }
  // Empty range when absent (optional tensors such as biases).
  vk::BufferRange optional_range(const std::string& name) const;
  const std::unordered_map<std::string, vk::Buffer>& all() const { return buffers_; }

 private:
  std::unordered_map<std::string, vk::Buffer> buffers_;
};

}  // namespace vkt::model
