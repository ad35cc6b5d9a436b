#pragma once
// When the matmul products run on the matrix units (shaders/coopmat/matmul_coopmat.comp), and the
// check a cooperative-matrix candidate must pass before autotuning may choose it.
//
// The coopmat body is one more autotune candidate (engine/kernels/autotune.hpp), offered only when
// all of these hold: VKT_NO_COOPMAT is unset; the device has VK_KHR_cooperative_matrix (feature on,
// with the Vulkan memory model) and reports a subgroup-scope fp16 x fp16 -> fp32 shape that
// vk::choose_coopmat_shape takes; the build compiled the shader (a glslang with
// GL_KHR_cooperative_matrix, cmake/Coopmat.cmake); the L operand is fp16 and the weight fp16 or
// nf4/int8/int4/int4_asym (bf16 needs GL_EXT_bfloat16, which the pinned glslang 13.1.1 lacks: skipped).
// Before it is timed, it computes a random problem of its shape class (same layouts, types and weight
// format, extents clamped to 256 x 256 x 2048; a quantized weight is the product's own) next to the
// default body; a relative error above coopmat_tolerance disqualifies it with a warning. Nothing on
// lavapipe offers cooperative matrices, so there the fallback bodies always run.
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/kernels/matmul.hpp"
#include "engine/vk/coopmat.hpp"

namespace vkt::kernels {

// max |coopmat - fallback| / max |fallback| allowed. Both read the same fp16 inputs and accumulate in
// fp32, so they differ by summation order (and by the fp16 rounding of a dequantized weight, about
// 2^-11 per element): errors near 1e-4; a wrong layout or tile gives errors of order 1.
constexpr double coopmat_tolerance = 5e-3;

struct CoopmatVerdict {
  bool matches = false;
  double relative_error = 0;  // max |candidate - reference| / max |reference|
};
// Pure: compares a candidate's output with the reference body's (NaN or a size mismatch fails).
CoopmatVerdict coopmat_verdict(std::span<const float> candidate, std::span<const float> reference,
                               double tolerance = coopmat_tolerance);

// The coopmat body's split of a (rows x cols) output: 4 subgroups of subgroup_size lanes, each 2 x 2
// m x n matrices, so a workgroup tile of 4m x 4n, k of the inner dimension per shared-memory slice.
struct CoopmatTiling {
  uint32_t m = 16, n = 16, k = 16;  // the device's matrix shape (vk::choose_coopmat_shape)
  uint32_t subgroup_size = 32;
  uint32_t tile_rows() const { return 4 * m; }
  uint32_t tile_cols() const { return 4 * n; }
  uint32_t workgroup_size() const { return 4 * subgroup_size; }
  // fp16 slices of L and R, and one fp32 m x n scratch per subgroup for the epilogue.
  uint32_t shared_bytes() const { return (tile_rows() + tile_cols()) * k * 2 + 4 * m * n * 4; }
  std::string name() const;  // "coopmat 64x64/16x16x16 sg32": its autotune candidate name
};

// What the coopmat decision depends on besides the device (tests fake them).
struct CoopmatInputs {
  DType l_type = DType::f32;
  DType r_type = DType::f32;              // a dense weight's storage type
  std::optional<WeightFormat> quantized;  // the weight's format when quantized
  bool shader_built = false;              // matmul_coopmat (or _q for a quantized weight) is embedded
  bool disabled = false;                  // VKT_NO_COOPMAT
};
// Pure: the coopmat tiling for such a product on a device with `caps` and `extensions`, or none with
// `why_not`.
std::optional<CoopmatTiling> coopmat_tiling(const vk::Capabilities& caps, const vk::ComputeExtensions& extensions,
                                            const CoopmatInputs& inputs, std::string* why_not = nullptr);
// The same for this context: the shader registry and VKT_NO_COOPMAT filled in.
std::optional<CoopmatTiling> coopmat_tiling(vk::Context& context, DType l_type, DType r_type,
                                            const WeightRef* quantized);

// The path each product took in this process, for bench/gpu.sh and tests: ("matmul_nt f16.f16->f16
// 4096x2048x2048", "coopmat 64x64/16x16x16"). VKT_LOG_MATMUL_PATHS=1 also logs each new one.
void note_matmul_path(const std::string& product, const std::string& path);
std::vector<std::pair<std::string, std::string>> matmul_paths();
void forget_matmul_paths();

}  // namespace vkt::kernels
