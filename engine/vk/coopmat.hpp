#pragma once
// VK_KHR_cooperative_matrix (the matrix units: NVIDIA tensor cores, AMD WMMA, Intel XMX) as far as
// vktune needs it: the types Debian 12's Vulkan headers (1.3.239) lack, declared here with the
// registry's values, and the pure choice of a tile shape from a device's property list (unit-tested
// with fake lists in tests/test_vk_coopmat.cpp; nothing here can run on lavapipe, which has no
// cooperative matrices).
#include <vulkan/vulkan.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

// Newer headers (1.3.255+) declare these; then theirs are used. Values from the Khronos registry
// (vk.xml, extension number 507): VkStructureType 1000506000..2, VkComponentTypeKHR 0..10, VkScopeKHR
// 1/2/3/5; VK_COMPONENT_TYPE_BFLOAT16_KHR is 1000141000 (VK_KHR_shader_bfloat16).
#ifndef VK_KHR_cooperative_matrix
#define VK_KHR_cooperative_matrix 1
#define VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME "VK_KHR_cooperative_matrix"
constexpr VkStructureType VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR =
    static_cast<VkStructureType>(1000506000);
constexpr VkStructureType VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR =
    static_cast<VkStructureType>(1000506001);
constexpr VkStructureType VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_KHR =
    static_cast<VkStructureType>(1000506002);
typedef enum VkComponentTypeKHR {
  VK_COMPONENT_TYPE_FLOAT16_KHR = 0,
  VK_COMPONENT_TYPE_FLOAT32_KHR = 1,
  VK_COMPONENT_TYPE_FLOAT64_KHR = 2,
  VK_COMPONENT_TYPE_SINT8_KHR = 3,
  VK_COMPONENT_TYPE_SINT16_KHR = 4,
  VK_COMPONENT_TYPE_SINT32_KHR = 5,
  VK_COMPONENT_TYPE_SINT64_KHR = 6,
  VK_COMPONENT_TYPE_UINT8_KHR = 7,
  VK_COMPONENT_TYPE_UINT16_KHR = 8,
  VK_COMPONENT_TYPE_UINT32_KHR = 9,
  VK_COMPONENT_TYPE_UINT64_KHR = 10,
  VK_COMPONENT_TYPE_MAX_ENUM_KHR = 0x7FFFFFFF
} VkComponentTypeKHR;
typedef enum VkScopeKHR {
  VK_SCOPE_DEVICE_KHR = 1,
  VK_SCOPE_WORKGROUP_KHR = 2,
  VK_SCOPE_SUBGROUP_KHR = 3,
  VK_SCOPE_QUEUE_FAMILY_KHR = 5,
  VK_SCOPE_MAX_ENUM_KHR = 0x7FFFFFFF
} VkScopeKHR;
typedef struct VkCooperativeMatrixPropertiesKHR {
  VkStructureType sType;
  void* pNext;
  uint32_t MSize;
  uint32_t NSize;
  uint32_t KSize;
  VkComponentTypeKHR AType;
  VkComponentTypeKHR BType;
  VkComponentTypeKHR CType;
  VkComponentTypeKHR ResultType;
  VkBool32 saturatingAccumulation;
  VkScopeKHR scope;
} VkCooperativeMatrixPropertiesKHR;
typedef struct VkPhysicalDeviceCooperativeMatrixFeaturesKHR {
  VkStructureType sType;
  void* pNext;
  VkBool32 cooperativeMatrix;
  VkBool32 cooperativeMatrixRobustBufferAccess;
} VkPhysicalDeviceCooperativeMatrixFeaturesKHR;
typedef VkResult(VKAPI_PTR* PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)(
    VkPhysicalDevice physicalDevice, uint32_t* pPropertyCount, VkCooperativeMatrixPropertiesKHR* pProperties);
#endif

namespace vkt::vk {

// VkComponentTypeKHR values vktune asks for (as plain numbers: the bf16 one is not in the KHR enum of
// every header).
constexpr uint32_t coopmat_float16 = 0, coopmat_float32 = 1;
constexpr uint32_t coopmat_bfloat16 = 1000141000;  // VK_COMPONENT_TYPE_BFLOAT16_KHR
constexpr uint32_t coopmat_scope_subgroup = 3;     // VK_SCOPE_SUBGROUP_KHR

// One VkCooperativeMatrixPropertiesKHR entry: an M x K (A) times K x N (B) plus M x N (C) product the
// device runs on its matrix units.
struct CoopmatShape {
  uint32_t m = 0, n = 0, k = 0;
  uint32_t a_type = 0, b_type = 0, c_type = 0, result_type = 0;  // VkComponentTypeKHR values
  bool saturating = false;
  uint32_t scope = 0;        // VkScopeKHR value
  std::string name() const;  // "16x16x16 f16*f16+f32 subgroup"
};

// The shape vktune's matmul_coopmat shader uses for `input_type` x `input_type` -> fp32 products
// (coopmat_float16 or coopmat_bfloat16), or none: subgroup scope, A and B of the input type, C and
// the result fp32, no saturation, every extent a multiple of 8 and at most 32 (the shader stages a
// workgroup tile of 4x4 shapes in shared memory; the host checks that it fits the device). Among those
// the largest M*N*K wins (fewer matrix instructions per tile), then the larger K (more work per
// shared-memory slice), then the device's order.
std::optional<CoopmatShape> choose_coopmat_shape(const std::vector<CoopmatShape>& shapes, uint32_t input_type);

// The device's VkCooperativeMatrixPropertiesKHR list (empty when the extension or the entry point
// is missing).
std::vector<CoopmatShape> query_coopmat_shapes(VkInstance instance, VkPhysicalDevice device);

class Context;

// The optional compute extensions vktune enables where a device offers them, read when the device is
// chosen, beside Capabilities (`vktune devices` prints both).
struct ComputeExtensions {
  // VK_KHR_cooperative_matrix with its feature and the Vulkan memory model (which the coopmat SPIR-V
  // declares), and the shapes the device reports.
  bool cooperative_matrix_khr = false;
  std::vector<CoopmatShape> coopmat_shapes;
  bool cooperative_matrix2_nv = false;  // VK_NV_cooperative_matrix2: reported, not used yet
  // VK_EXT_subgroup_size_control (core in 1.3) for compute pipelines: requiredSubgroupSize in
  // [min_subgroup_size, max_subgroup_size], and full subgroups.
  bool subgroup_size_control = false, compute_full_subgroups = false;
  bool subgroup_size_control_extension = false;  // enabled as an extension (a Vulkan 1.2 device)
  uint32_t min_subgroup_size = 0, max_subgroup_size = 0;

  // " | coopmat KHR: 8 shapes, fp16 16x16x16 f16*f16+f32 subgroup, bf16 none | coopmat2 no | subgroup
  // size control 8-64"
  std::string summary() const;
  std::string to_json() const;  // one JSON object (its fields join Capabilities::to_json's)
};

ComputeExtensions query_compute_extensions(VkInstance instance, VkPhysicalDevice device);
// Every device's, in vkEnumeratePhysicalDevices order (a temporary instance, as list_devices).
std::vector<ComputeExtensions> list_compute_extensions();
// What `context`'s device has and vktune enabled (Context records it when it creates the device).
const ComputeExtensions& compute_extensions(const Context& context);
void remember_compute_extensions(VkDevice device, const ComputeExtensions& extensions);
void forget_compute_extensions(VkDevice device);


}  // namespace vkt::vk
