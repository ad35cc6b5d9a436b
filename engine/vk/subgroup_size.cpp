#include "engine/vk/subgroup_size.hpp"

#include "engine/vk/coopmat.hpp"

namespace vkt::vk {

std::string subgroup_sized_shader(const Context& context, const std::string& shader, uint32_t subgroup_size) {
  const ComputeExtensions& extensions = compute_extensions(context);
  if (subgroup_size == 0 || !extensions.subgroup_size_control || subgroup_size < extensions.min_subgroup_size ||
      subgroup_size > extensions.max_subgroup_size)
    return shader;
  return shader + "@sg" + std::to_string(subgroup_size) + (extensions.compute_full_subgroups ? "f" : "");
}

SubgroupRequest parse_subgroup_request(const std::string& pipeline_name) {
  SubgroupRequest request;
  size_t at = pipeline_name.rfind("@sg");
  request.shader = pipeline_name.substr(0, at);
  if (at == std::string::npos) return request;
  std::string size = pipeline_name.substr(at + 3);
  request.full_subgroups = !size.empty() && size.back() == 'f';
  if (request.full_subgroups) size.pop_back();
  request.size = static_cast<uint32_t>(std::stoul(size));
  return request;
}

}  // namespace vkt::vk
