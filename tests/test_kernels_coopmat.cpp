// Cooperative-matrix selection (engine/vk/coopmat.hpp, engine/kernels/matmul_coopmat.hpp): the pure
// choices with fake VkCooperativeMatrixPropertiesKHR lists shaped like what NVIDIA, AMD and Intel
// drivers report, the verification verdict, and on lavapipe (no cooperative matrices) that no coopmat
// tiling is offered and the fallback body runs even when autotuning is forced to the last candidate.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/base/half.hpp"
#include "engine/kernels/autotune.hpp"
#include "engine/kernels/matmul_coopmat.hpp"
#include "engine/vk/coopmat.hpp"
#include "engine/vk/subgroup_size.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::DType;
using kernels::WeightFormat;
using vk::CoopmatShape;
using vkt::test::context;
using vkt::test::Guarded;

namespace {

constexpr uint32_t f16 = vk::coopmat_float16, f32 = vk::coopmat_float32, bf16 = vk::coopmat_bfloat16;
constexpr uint32_t s8 = 3, s32 = 5, subgroup = vk::coopmat_scope_subgroup, workgroup = 2;

CoopmatShape shape(uint32_t m, uint32_t n, uint32_t k, uint32_t ab, uint32_t c, uint32_t scope = subgroup,
                   bool saturating = false) {
  return CoopmatShape{m, n, k, ab, ab, c, c, saturating, scope};
}

// What an NVIDIA driver lists (abridged): fp16 with fp16 and fp32 accumulators, int8, fp16 16x8 shapes.
std::vector<CoopmatShape> nvidia_like() {
  return {shape(16, 16, 16, f16, f16), shape(16, 8, 16, f16, f16), shape(16, 8, 8, f16, f16),
          shape(16, 8, 16, f16, f32),  shape(16, 8, 8, f16, f32),  shape(16, 16, 16, f16, f32),
          shape(16, 8, 32, s8, s32),   shape(16, 16, 32, s8, s32)};
}

// A device with fp16, 32-lane subgroups and 48 KiB of shared memory, and one that also offers
// cooperative matrices with `shapes`.
vk::Capabilities gpu_caps() {
  vk::Capabilities caps;
  caps.cooperative_matrix = true;
  caps.fp16_arithmetic = caps.storage_16bit = true;
  caps.subgroup_size = caps.min_subgroup_size = caps.max_subgroup_size = 32;
  caps.max_shared_memory = 48 << 10;
  caps.max_workgroup_invocations = 1024;
  return caps;
}
vk::ComputeExtensions coopmat_device(std::vector<CoopmatShape> shapes) {
  vk::ComputeExtensions extensions;
  extensions.cooperative_matrix_khr = true;
  extensions.coopmat_shapes = std::move(shapes);
  return extensions;
}

kernels::CoopmatInputs fp16_inputs() {
  kernels::CoopmatInputs inputs;
  inputs.l_type = inputs.r_type = DType::f16;
  inputs.shader_built = true;
  return inputs;
}

}  // namespace

TEST_SUITE("autotune") {
TEST_CASE("coopmat: the tile shape chosen from a device's property list") {
  auto nvidia = vk::choose_coopmat_shape(nvidia_like(), f16);
  REQUIRE(nvidia);
  CHECK(nvidia->name() == "16x16x16 f16*f16+f32 subgroup");    // largest fp32-accumulating fp16 shape
  CHECK_FALSE(vk::choose_coopmat_shape(nvidia_like(), bf16));  // no bf16 entry
  // AMD RDNA3 (WMMA): 16x16x16 only, fp16 and bf16.
  std::vector<CoopmatShape> amd = {shape(16, 16, 16, f16, f16), shape(16, 16, 16, f16, f32),
                                   shape(16, 16, 16, bf16, f32), shape(16, 16, 16, s8, s32)};
  CHECK(vk::choose_coopmat_shape(amd, f16)->name() == "16x16x16 f16*f16+f32 subgroup");
  CHECK(vk::choose_coopmat_shape(amd, bf16)->name() == "16x16x16 bf16*bf16+f32 subgroup");
  // Intel XMX (DG2): M = 8.
  std::vector<CoopmatShape> intel = {shape(8, 16, 16, f16, f32), shape(8, 16, 32, s8, s32)};
  CHECK(vk::choose_coopmat_shape(intel, f16)->name() == "8x16x16 f16*f16+f32 subgroup");
  // Equal volumes: the larger K.
  CHECK(vk::choose_coopmat_shape({shape(16, 16, 8, f16, f32), shape(16, 8, 16, f16, f32)}, f16)->k == 16);
  // Nothing usable: empty; workgroup scope (NV_cooperative_matrix2 style); saturating; fp16 accumulator
  // only; an extent above 32 or not a multiple of 8.
  CHECK_FALSE(vk::choose_coopmat_shape({}, f16));
  CHECK_FALSE(vk::choose_coopmat_shape({shape(16, 16, 16, f16, f32, workgroup)}, f16));
  CHECK_FALSE(vk::choose_coopmat_shape({shape(16, 16, 16, f16, f32, subgroup, true)}, f16));
  CHECK_FALSE(vk::choose_coopmat_shape({shape(16, 16, 16, f16, f16)}, f16));
  CHECK_FALSE(vk::choose_coopmat_shape({shape(64, 16, 16, f16, f32), shape(12, 16, 16, f16, f32)}, f16));
  // Mixed A/B types are not ours.
  CHECK_FALSE(vk::choose_coopmat_shape({CoopmatShape{16, 16, 16, f16, bf16, f32, f32, false, subgroup}}, f16));
}

TEST_CASE("coopmat: offered only for fp16 products on a device and build that have it") {
  std::string why;
  auto tiling = kernels::coopmat_tiling(gpu_caps(), coopmat_device(nvidia_like()), fp16_inputs(), &why);
  REQUIRE(tiling);
  CHECK(tiling->name() == "coopmat 64x64/16x16x16 sg32");
  CHECK(tiling->workgroup_size() == 128);
  CHECK(tiling->shared_bytes() == (64 + 64) * 16 * 2 + 4 * 16 * 16 * 4);

  kernels::CoopmatInputs nf4 = fp16_inputs();
  nf4.r_type = DType::f32;
  nf4.quantized = WeightFormat::nf4;
  CHECK(kernels::coopmat_tiling(gpu_caps(), coopmat_device(nvidia_like()), nf4));
  nf4.quantized = WeightFormat::int4_asym;
  CHECK(kernels::coopmat_tiling(gpu_caps(), coopmat_device(nvidia_like()), nf4));

  struct Refusal {
    const char* what;
    vk::Capabilities caps;
    vk::ComputeExtensions extensions;
    kernels::CoopmatInputs inputs;
    const char* reason;
  };
  std::vector<Refusal> refusals;
  auto add = [&](const char* what, vk::ComputeExtensions extensions, kernels::CoopmatInputs inputs, const char* reason,
                 vk::Capabilities caps = gpu_caps()) {
    refusals.push_back({what, std::move(caps), std::move(extensions), inputs, reason});
  };
  kernels::CoopmatInputs inputs = fp16_inputs();
  inputs.disabled = true;
  add("VKT_NO_COOPMAT", coopmat_device(nvidia_like()), inputs, "VKT_NO_COOPMAT");
  vk::ComputeExtensions no_extension = coopmat_device(nvidia_like());
  no_extension.cooperative_matrix_khr = false;
  add("no extension", no_extension, fp16_inputs(), "lacks VK_KHR_cooperative_matrix");
  inputs = fp16_inputs();
  inputs.shader_built = false;
  add("not built", coopmat_device(nvidia_like()), inputs, "no coopmat shaders");
  inputs = fp16_inputs();
  inputs.l_type = inputs.r_type = DType::bf16;
  add("bf16", coopmat_device(nvidia_like()), inputs, "bf16");
  inputs = fp16_inputs();
  inputs.l_type = DType::f32;
  add("fp32 activations", coopmat_device(nvidia_like()), inputs, "not fp16");
  inputs = fp16_inputs();
  inputs.quantized = WeightFormat::ggml_q4_k;
  add("ggml weight", coopmat_device(nvidia_like()), inputs, "weight format");
  add("no fp32-accumulating shape", coopmat_device({shape(16, 16, 16, f16, f16)}), fp16_inputs(), "no usable");
  vk::Capabilities small_shared = gpu_caps();
  small_shared.max_shared_memory = 4 << 10;
  add("shared memory", coopmat_device(nvidia_like()), fp16_inputs(), "shared memory", small_shared);
  vk::Capabilities no_fp16 = gpu_caps();
  no_fp16.fp16_arithmetic = false;
  add("no fp16 arithmetic", coopmat_device(nvidia_like()), fp16_inputs(), "fp16 arithmetic", no_fp16);
  for (const Refusal& refusal : refusals) {
    INFO(std::string(refusal.what));
    std::string reason;
    CHECK_FALSE(kernels::coopmat_tiling(refusal.caps, refusal.extensions, refusal.inputs, &reason));
    CHECK(reason.find(refusal.reason) != std::string::npos);
  }

  // Subgroup size: 32 where the device lets pipelines ask for it, else the driver's default.
  vk::Capabilities amd = gpu_caps();
  amd.subgroup_size = 64;
  vk::ComputeExtensions amd_extensions = coopmat_device(nvidia_like());
  amd_extensions.min_subgroup_size = 32;
  amd_extensions.max_subgroup_size = 64;
  amd_extensions.subgroup_size_control = true;
  CHECK(kernels::coopmat_tiling(amd, amd_extensions, fp16_inputs())->subgroup_size == 32);
  amd_extensions.subgroup_size_control = false;
  CHECK(kernels::coopmat_tiling(amd, amd_extensions, fp16_inputs())->workgroup_size() == 256);
}

TEST_CASE("coopmat: the verification verdict") {
  std::vector<float> reference = {1.0f, -0.5f, 0.25f, 2.0f};
  CHECK(kernels::coopmat_verdict(reference, reference).matches);
  CHECK(kernels::coopmat_verdict(reference, reference).relative_error == 0.0);
  std::vector<float> close = {1.0f + 1e-4f, -0.5f, 0.25f, 2.0f - 1e-3f};  // 5e-4 of max |reference|
  auto near = kernels::coopmat_verdict(close, reference);
  CHECK(near.matches);
  CHECK(near.relative_error == doctest::Approx(5e-4).epsilon(1e-2));
  std::vector<float> wrong = reference;
  wrong[2] = 0.5f;  // 0.25 off: 0.125 of max |reference|
  CHECK_FALSE(kernels::coopmat_verdict(wrong, reference).matches);
  std::vector<float> nan = reference;
  nan[0] = NAN;
  CHECK_FALSE(kernels::coopmat_verdict(nan, reference).matches);
  CHECK_FALSE(kernels::coopmat_verdict(std::vector<float>{1.0f}, reference).matches);
  std::vector<float> zeros(4, 0.0f);
  CHECK(kernels::coopmat_verdict(zeros, zeros).matches);
  CHECK_FALSE(kernels::coopmat_verdict(std::vector<float>{0, 0, 0, 1e-6f}, zeros).matches);
}

TEST_CASE("coopmat: lavapipe offers none and the fallback body runs") {
  const vk::ComputeExtensions& extensions = vk::compute_extensions(context());
  CHECK_FALSE(extensions.cooperative_matrix_khr);
  CHECK(extensions.coopmat_shapes.empty());
  CHECK_FALSE(kernels::coopmat_tiling(context(), DType::f16, DType::f16, nullptr));
  // Autotuning forced to the last candidate: were a coopmat tiling offered, it would be that one.
  kernels::AutotuneSettings saved = kernels::autotune_settings();
  kernels::autotune_settings().mode = kernels::AutotuneMode::on;
  kernels::autotune_settings().forced_candidate = 1000;
  kernels::forget_matmul_paths();
  uint32_t m = 32, n = 48, k = 64;
  std::vector<float> a = test::random_floats(size_t(m) * k, 3), w = test::random_floats(size_t(n) * k, 4);
  std::vector<uint16_t> a16(a.size()), w16(w.size());
  for (size_t i = 0; i < a.size(); i++) a16[i] = float_to_half(a[i]);
  for (size_t i = 0; i < w.size(); i++) w16[i] = float_to_half(w[i]);
  Guarded a_device = Guarded::of_raw(a16, "A"), w_device = Guarded::of_raw(w16, "W");
  Guarded c_device(size_t(m) * n * 4, "C");
  kernels::WeightRef w_ref = kernels::dense_f32(w_device.range());
  w_ref.format = WeightFormat::f16;
  context().run([&](vk::Recorder& r) {
    kernels::matmul_nt(r, a_device.range(), DType::f16, w_ref, c_device.range(), DType::f32, m, n, k);
  });
  kernels::autotune_settings() = saved;
  auto paths = kernels::matmul_paths();
  REQUIRE(paths.size() == 1);
  CHECK(paths[0].first == "matmul_nt fp16.fp16->fp32 32x48x64");
  CHECK(paths[0].second == kernels::matmul_candidates(context(), m, n).back().name());
  CHECK(paths[0].second.rfind("coopmat", 0) == std::string::npos);
  // And the product is right (the fp16 inputs exactly, fp32 accumulation).
  std::vector<float> a_exact(a.size()), w_exact(w.size()), expected(size_t(m) * n);
  for (size_t i = 0; i < a.size(); i++) a_exact[i] = half_to_float(a16[i]);
  for (size_t i = 0; i < w.size(); i++) w_exact[i] = half_to_float(w16[i]);
  ref::matmul_nt(a_exact.data(), w_exact.data(), expected.data(), m, n, k, 1.0f, 0.0f);
  CHECK(kernels::coopmat_verdict(c_device.read<float>(), expected, 1e-5).matches);
  CHECK(c_device.guard_intact());
}

TEST_CASE("subgroup size control: the pipeline names that ask for a size") {
  vk::SubgroupRequest plain = vk::parse_subgroup_request("matmul_direct_s16");
  CHECK(plain.shader == "matmul_direct_s16");
  CHECK(plain.size == 0);
  vk::SubgroupRequest full = vk::parse_subgroup_request("matmul_direct_s16@sg8f");
  CHECK(full.shader == "matmul_direct_s16");
  CHECK(full.size == 8);
  CHECK(full.full_subgroups);
  vk::SubgroupRequest sized = vk::parse_subgroup_request("matmul_coopmat_q@sg32");
  CHECK(sized.shader == "matmul_coopmat_q");
  CHECK(sized.size == 32);
  CHECK_FALSE(sized.full_subgroups);
  // This device: asked for only where it lets compute pipelines choose, and never size 0.
  const vk::ComputeExtensions& extensions = vk::compute_extensions(context());
  uint32_t size = context().caps().subgroup_size;
  std::string name = vk::subgroup_sized_shader(context(), "matmul_direct", size);
  CHECK(name == (extensions.subgroup_size_control
                     ? "matmul_direct@sg" + std::to_string(size) + (extensions.compute_full_subgroups ? "f" : "")
                     : std::string("matmul_direct")));
  CHECK(vk::subgroup_sized_shader(context(), "matmul", 0) == "matmul");
  CHECK(vk::subgroup_sized_shader(context(), "matmul", 4096) == "matmul");
}
}  // TEST_SUITE
