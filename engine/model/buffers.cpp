#include "engine/model/buffers.hpp"

#include "engine/base/error.hpp"

namespace vkt::model {

BufferSet::BufferSet(vk::Context& context, const plan::MemoryPlan& plan,
                     const std::function<bool(const plan::BufferSpec&)>& keep) {
  for (const auto& spec : plan.buffers) {
    if (spec.external || (keep && !keep(spec))) continue;
    buffers_.emplace(spec.name, context.allocate(spec.bytes, spec.category, spec.name, spec.kind));
  }
}

vk::Buffer& BufferSet::buffer(const std::string& name) {
  auto it = buffers_.find(name);
  VKT_ASSERT(it != buffers_.end(), "no buffer named " + name + " in the plan");
  return it->second;
}

const vk::Buffer& BufferSet::buffer(const std::string& name) const {
  auto it = buffers_.find(name);
  VKT_ASSERT(it != buffers_.end(), "no buffer named " + name + " in the plan");
  return it->second;
}

vk::BufferRange BufferSet::optional_range(const std::string& name) const {
  auto it = buffers_.find(name);
  return it == buffers_.end() ? vk::BufferRange{} : it->second.range();
}

}  // namespace vkt::model
