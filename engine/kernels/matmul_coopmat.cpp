#include "engine/kernels/matmul_coopmat.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "engine/base/log.hpp"
#include "engine/vk/shader_registry.hpp"

namespace vkt::kernels {
namespace {

bool env_flag(const char* name) {
  const char* value = std::getenv(name);
  return value && *value && std::strcmp(value, "0") != 0;
}

struct PathLog {
  std::mutex mutex;
  std::map<std::string, std::string> paths;
};
PathLog& path_log() {
  static PathLog log;
  return log;
}

}  // namespace

CoopmatVerdict coopmat_verdict(std::span<const float> candidate, std::span<const float> reference, double tolerance) {
  CoopmatVerdict verdict;
  if (candidate.size() != reference.size() || reference.empty()) {
    verdict.relative_error = INFINITY;
    return verdict;
  }
  double max_reference = 0, max_difference = 0;
  for (size_t i = 0; i < reference.size(); i++) {
    double difference = std::fabs(double(candidate[i]) - double(reference[i]));
    if (!std::isfinite(candidate[i]) || !std::isfinite(reference[i])) difference = INFINITY;
    max_difference = std::max(max_difference, difference);
    max_reference = std::max(max_reference, std::fabs(double(reference[i])));
  }
  verdict.relative_error = max_difference / std::max(max_reference, 1e-30);
  verdict.matches = verdict.relative_error <= tolerance;
  return verdict;
}

std::string CoopmatTiling::name() const {
  return "coopmat " + std::to_string(tile_rows()) + "x" + std::to_string(tile_cols()) + "/" + std::to_string(m) + "x" +
         std::to_string(n) + "x" + std::to_string(k) + " sg" + std::to_string(subgroup_size);
}

std::optional<CoopmatTiling> coopmat_tiling(const vk::Capabilities& caps, const vk::ComputeExtensions& extensions,
                                            const CoopmatInputs& inputs, std::string* why_not) {
  auto refuse = [&](const std::string& reason) -> std::optional<CoopmatTiling> {
    if (why_not) *why_not = reason;
    return std::nullopt;
  };
  if (inputs.disabled) return refuse("VKT_NO_COOPMAT is set");
  if (!extensions.cooperative_matrix_khr) return refuse("the device lacks VK_KHR_cooperative_matrix");
  if (!caps.fp16_arithmetic || !caps.storage_16bit) return refuse("the device lacks fp16 arithmetic or storage");
  if (inputs.l_type == DType::bf16 || (!inputs.quantized && inputs.r_type == DType::bf16))
    return refuse("bf16 coopmat variants are not built (glslang 13.1.1 lacks GL_EXT_bfloat16)");
  if (inputs.l_type != DType::f16) return refuse("the activation operand is not fp16");
  if (inputs.quantized) {
    WeightFormat format = *inputs.quantized;
    if (format != WeightFormat::nf4 && format != WeightFormat::int8 && format != WeightFormat::int4 &&
        format != WeightFormat::int4_asym)
      return refuse("no coopmat variant for this weight format");
  } else if (inputs.r_type != DType::f16) {
    return refuse("the weight operand is not fp16");
  }
  if (!inputs.shader_built) return refuse("this build has no coopmat shaders (cmake/Coopmat.cmake)");
  auto shape = vk::choose_coopmat_shape(extensions.coopmat_shapes, vk::coopmat_float16);
  if (!shape) return refuse("the device reports no usable fp16 x fp16 -> fp32 subgroup shape");
  CoopmatTiling tiling;
  tiling.m = shape->m;
  tiling.n = shape->n;
  tiling.k = shape->k;
  // 32 lanes where the device lets us ask for them (NVIDIA's only size, RDNA's WMMA size), else the
  // driver's default, which the pipeline then asks for (VK_EXT_subgroup_size_control) where it can.
  bool can_ask_32 =
      extensions.subgroup_size_control && extensions.min_subgroup_size <= 32 && extensions.max_subgroup_size >= 32;
  tiling.subgroup_size = can_ask_32 ? 32 : caps.subgroup_size;
  if (tiling.subgroup_size == 0) return refuse("unknown subgroup size");
  if (tiling.workgroup_size() > caps.max_workgroup_invocations) return refuse("workgroup above the device limit");
  if (tiling.shared_bytes() > caps.max_shared_memory) return refuse("tile does not fit shared memory");
  return tiling;
}

std::optional<CoopmatTiling> coopmat_tiling(vk::Context& context, DType l_type, DType r_type,
                                            const WeightRef* quantized) {
  CoopmatInputs inputs;
  inputs.l_type = l_type;
  inputs.r_type = r_type;
  if (quantized) inputs.quantized = quantized->format;
  inputs.shader_built = vk::find_shader(quantized ? "matmul_coopmat_q" : "matmul_coopmat") != nullptr;
  inputs.disabled = env_flag("VKT_NO_COOPMAT");
  return coopmat_tiling(context.caps(), vk::compute_extensions(context), inputs);
}

void note_matmul_path(const std::string& product, const std::string& path) {
  PathLog& log = path_log();
  std::lock_guard lock(log.mutex);
  auto [entry, added] = log.paths.try_emplace(product, path);
  if (!added && entry->second == path) return;
  entry->second = path;
  static const bool print = env_flag("VKT_LOG_MATMUL_PATHS");
  if (print) log::info("matmul path: " + product + ": " + path);
}

std::vector<std::pair<std::string, std::string>> matmul_paths() {
  PathLog& log = path_log();
  std::lock_guard lock(log.mutex);
  return {log.paths.begin(), log.paths.end()};
}

void forget_matmul_paths() {
  PathLog& log = path_log();
  std::lock_guard lock(log.mutex);
  log.paths.clear();
}

}  // namespace vkt::kernels
