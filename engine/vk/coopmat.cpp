#include "engine/vk/coopmat.hpp"

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "engine/vk/context.hpp"
#include "engine/vk/instance.hpp"

namespace vkt::vk {
namespace {

const char* component_name(uint32_t type) {
  switch (type) {
    case coopmat_float16:
      return "f16";
    case coopmat_float32:
      return "f32";
    case 2:
      return "f64";
    case 3:
      return "s8";
    case 5:
      return "s32";
    case 7:
      return "u8";
    case 9:
      return "u32";
    case coopmat_bfloat16:
      return "bf16";
    default:
      return "other";
  }
}

}  // namespace

std::string CoopmatShape::name() const {
  return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " " + component_name(a_type) + "*" +
         component_name(b_type) + "+" + component_name(c_type) +
         (scope == coopmat_scope_subgroup ? " subgroup" : " scope" + std::to_string(scope)) +
         (saturating ? " saturating" : "");
}

std::optional<CoopmatShape> choose_coopmat_shape(const std::vector<CoopmatShape>& shapes, uint32_t input_type) {
  std::optional<CoopmatShape> best;
  auto usable_extent = [](uint32_t extent) { return extent >= 8 && extent <= 32 && extent % 8 == 0; };
  for (const CoopmatShape& shape : shapes) {
    if (shape.scope != coopmat_scope_subgroup || shape.saturating) continue;
    if (shape.a_type != input_type || shape.b_type != input_type) continue;
    if (shape.c_type != coopmat_float32 || shape.result_type != coopmat_float32) continue;
    if (!usable_extent(shape.m) || !usable_extent(shape.n) || !usable_extent(shape.k)) continue;
    uint64_t volume = uint64_t(shape.m) * shape.n * shape.k;
    uint64_t best_volume = best ? uint64_t(best->m) * best->n * best->k : 0;
    if (!best || volume > best_volume || (volume == best_volume && shape.k > best->k)) best = shape;
  }
  return best;
}

std::vector<CoopmatShape> query_coopmat_shapes(VkInstance instance, VkPhysicalDevice device) {
  std::vector<CoopmatShape> result;
  if (!instance) return result;
  auto get_properties = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR>(
      vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"));
  if (!get_properties) return result;
  uint32_t count = 0;
  if (get_properties(device, &count, nullptr) != VK_SUCCESS || count == 0) return result;
  std::vector<VkCooperativeMatrixPropertiesKHR> properties(count);
  for (auto& entry : properties) {
    entry = {};
    entry.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
  }
  if (get_properties(device, &count, properties.data()) < VK_SUCCESS) return result;
  properties.resize(count);
  for (const auto& entry : properties) {
    CoopmatShape shape;
    shape.m = entry.MSize;
    shape.n = entry.NSize;
    shape.k = entry.KSize;
    shape.a_type = static_cast<uint32_t>(entry.AType);
    shape.b_type = static_cast<uint32_t>(entry.BType);
    shape.c_type = static_cast<uint32_t>(entry.CType);
    shape.result_type = static_cast<uint32_t>(entry.ResultType);
    shape.saturating = entry.saturatingAccumulation;
    shape.scope = static_cast<uint32_t>(entry.scope);
    result.push_back(shape);
  }
  return result;
}

ComputeExtensions query_compute_extensions(VkInstance instance, VkPhysicalDevice device) {
  ComputeExtensions result;
  auto extensions = device_extensions(device);
  VkPhysicalDeviceProperties properties;
  vkGetPhysicalDeviceProperties(device, &properties);
  bool vulkan13 = properties.apiVersion >= VK_API_VERSION_1_3;
  bool has_coopmat = has_extension(extensions, VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME);
  result.subgroup_size_control_extension =
      !vulkan13 && has_extension(extensions, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
  if (properties.apiVersion < VK_API_VERSION_1_2) return result;

  VkPhysicalDeviceVulkan12Features features12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceCooperativeMatrixFeaturesKHR coopmat{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR};
  VkPhysicalDeviceSubgroupSizeControlFeatures size_control{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES};
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  features.pNext = &features12;
  void** tail = &features12.pNext;
  if (has_coopmat) {
    *tail = &coopmat;
    tail = &coopmat.pNext;
  }
  bool has_size_control = vulkan13 || result.subgroup_size_control_extension;
  if (has_size_control) *tail = &size_control;
  vkGetPhysicalDeviceFeatures2(device, &features);

  VkPhysicalDeviceSubgroupSizeControlProperties size_properties{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
  VkPhysicalDeviceProperties2 properties2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  if (has_size_control) properties2.pNext = &size_properties;
  vkGetPhysicalDeviceProperties2(device, &properties2);

  result.cooperative_matrix_khr = has_coopmat && coopmat.cooperativeMatrix && features12.vulkanMemoryModel;
  if (result.cooperative_matrix_khr) result.coopmat_shapes = query_coopmat_shapes(instance, device);
  result.cooperative_matrix2_nv = has_extension(extensions, "VK_NV_cooperative_matrix2");
  // Only where compute pipelines may ask for a size (requiredSubgroupSizeStages).
  result.subgroup_size_control = has_size_control && size_control.subgroupSizeControl &&
                                 (size_properties.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT);
  result.compute_full_subgroups = result.subgroup_size_control && size_control.computeFullSubgroups;
  result.min_subgroup_size = size_properties.minSubgroupSize;
  result.max_subgroup_size = size_properties.maxSubgroupSize;
  return result;
}

std::vector<ComputeExtensions> list_compute_extensions() {
  InstanceOptions options;
  options.validation = 0;  // only reads properties
  Instance instance(options);
  std::vector<ComputeExtensions> result;
  for (VkPhysicalDevice device : physical_devices(instance.handle()))
    result.push_back(query_compute_extensions(instance.handle(), device));
  return result;
}

std::string ComputeExtensions::summary() const {
  std::string line;
  if (cooperative_matrix_khr) {
    auto fp16 = choose_coopmat_shape(coopmat_shapes, coopmat_float16);
    auto bf16 = choose_coopmat_shape(coopmat_shapes, coopmat_bfloat16);
    line += " | coopmat KHR: " + std::to_string(coopmat_shapes.size()) + " shapes, fp16 " +
            (fp16 ? fp16->name() : "none") + ", bf16 " + (bf16 ? bf16->name() : "none");
  }
  line += std::string(" | coopmat2 ") + (cooperative_matrix2_nv ? "yes" : "no") + " | subgroup size control " +
          (subgroup_size_control ? std::to_string(min_subgroup_size) + "-" + std::to_string(max_subgroup_size) : "no");
  return line;
}

std::string ComputeExtensions::to_json() const {
  nlohmann::json shapes = nlohmann::json::array();
  for (const auto& shape : coopmat_shapes) shapes.push_back(shape.name());
  return nlohmann::json{{"cooperative_matrix_khr", cooperative_matrix_khr},
                        {"coopmat_shapes", shapes},
                        {"cooperative_matrix2_nv", cooperative_matrix2_nv},
                        {"subgroup_size_control", subgroup_size_control},
                        {"compute_full_subgroups", compute_full_subgroups}}
      .dump();
}

namespace {
struct ExtensionTable {
  std::mutex mutex;
  std::map<VkDevice, ComputeExtensions> by_device;
};
ExtensionTable& extension_table() {
  static ExtensionTable table;
  return table;
}
}  // namespace

void remember_compute_extensions(VkDevice device, const ComputeExtensions& extensions) {
  std::lock_guard lock(extension_table().mutex);
  extension_table().by_device[device] = extensions;
}

void forget_compute_extensions(VkDevice device) {
  std::lock_guard lock(extension_table().mutex);
  extension_table().by_device.erase(device);
}

const ComputeExtensions& compute_extensions(const Context& context) {
  static const ComputeExtensions none;
  std::lock_guard lock(extension_table().mutex);
  auto found = extension_table().by_device.find(context.device());
  return found == extension_table().by_device.end() ? none : found->second;
}

}  // namespace vkt::vk
