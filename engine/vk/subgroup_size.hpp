#pragma once
// Subgroup size control (VK_EXT_subgroup_size_control, core in Vulkan 1.3) for the compute bodies that
// count on a subgroup size: the direct matmul and attention bodies (one subgroup per workgroup, lanes
// share rows by shuffles) and the coopmat matmul body (4 subgroups per workgroup).
#include <cstdint>
#include <string>

namespace vkt::vk {

class Context;

// A compute body that counts on a subgroup size asks for it with this pipeline name: "<shader>@sg<N>"
// (+"f": full subgroups), which PipelineCache::get creates with VkPipelineShaderStageRequiredSubgroupSize-
// CreateInfo. The plain name where the device cannot choose (no VK_EXT_subgroup_size_control for
// compute, N outside its range) or N is 0. Devices with several sizes (Intel 8/16/32, AMD 32/64) may
// otherwise pick another one per pipeline; on lavapipe (8 only) it changes nothing.
std::string subgroup_sized_shader(const Context& context, const std::string& shader, uint32_t subgroup_size);
struct SubgroupRequest {
  std::string shader;  // the embedded shader's name
  uint32_t size = 0;   // 0: none
  bool full_subgroups = false;
};
SubgroupRequest parse_subgroup_request(const std::string& pipeline_name);

}  // namespace vkt::vk
