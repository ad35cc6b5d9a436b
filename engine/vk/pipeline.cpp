#include "engine/vk/pipeline.hpp"

#include "engine/base/error.hpp"
#include "engine/vk/check.hpp"
#include "engine/vk/subgroup_size.hpp"
#include "engine/vk/shader_registry.hpp"

namespace vkt::vk {

PipelineCache::PipelineCache(VkDevice device, VkPipelineLayout layout) : device_(device), layout_(layout) {}

PipelineCache::~PipelineCache() {
  for (auto& [key, pipeline] : pipelines_) vkDestroyPipeline(device_, pipeline->handle, nullptr);
  for (auto& [name, module] : modules_) vkDestroyShaderModule(device_, module, nullptr);
}

size_t PipelineCache::size() const {
  std::lock_guard lock(mutex_);
  return pipelines_.size();
}

const Pipeline& PipelineCache::get(const std::string& shader, std::span<const uint32_t> specialization) {
  std::lock_guard lock(mutex_);
  auto key = std::make_pair(shader, std::vector<uint32_t>(specialization.begin(), specialization.end()));
  if (auto it = pipelines_.find(key); it != pipelines_.end()) {
    hits_++;
    return *it->second;
  }
  misses_++;
  // "<shader>@sg<N>[f]": the same shader with a required subgroup size (subgroup_sized_shader).
  SubgroupRequest subgroup = parse_subgroup_request(shader);
  VkShaderModule& module = modules_[subgroup.shader];
  if (!module) {
    const EmbeddedShader* embedded = find_shader(subgroup.shader);
    VKT_ASSERT(embedded != nullptr, "no embedded shader named " + subgroup.shader);
    VkShaderModuleCreateInfo module_info{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    module_info.codeSize = embedded->word_count * 4;
    module_info.pCode = embedded->words;
    VK_CHECK(vkCreateShaderModule(device_, &module_info, nullptr, &module));
  }
  std::vector<VkSpecializationMapEntry> entries(specialization.size());
  for (uint32_t i = 0; i < entries.size(); i++) entries[i] = {i, i * 4, 4};
  VkSpecializationInfo specialization_info{static_cast<uint32_t>(entries.size()), entries.data(),
                                           specialization.size() * 4, key.second.data()};
  VkComputePipelineCreateInfo info{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  info.stage.module = module;
  info.stage.pName = "main";
  info.stage.pSpecializationInfo = entries.empty() ? nullptr : &specialization_info;
  VkPipelineShaderStageRequiredSubgroupSizeCreateInfo required_size{
      VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO};
  if (subgroup.size) {
    required_size.requiredSubgroupSize = subgroup.size;
    info.stage.pNext = &required_size;
    if (subgroup.full_subgroups) info.stage.flags |= VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT;
  }
  info.layout = layout_;
  auto pipeline = std::make_unique<Pipeline>();
  pipeline->name = shader;
  VK_CHECK(vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &info, nullptr, &pipeline->handle));
  auto& stored = pipelines_[std::move(key)];
  stored = std::move(pipeline);
  return *stored;
}

}  // namespace vkt::vk
