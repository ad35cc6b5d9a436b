// matmul_nt_lora_a / matmul_nn_lora_b (engine/kernels/matmul_lora_a.hpp): the base product y = x·Wᵀ
// (+ bias) and LoRA's t = x·Aᵀ in one dispatch, and the backward's dx = dy·W (+ dx) and dt = s·dy·B.
// Both outputs bit for bit what the two products give in separate dispatches (each output summed over
// the inner dimension in the same order), and within fp32 accumulation of the fp64 reference; both
// shader bodies, fp32/bf16/fp16 activations, bias, an NF4 (double-quantized) base weight, ranks that
// fill part of a column tile, vec4 and scalar loads, and a long inner dimension summed in passes on
// lavapipe; the kill switch VKT_DISABLE_FUSED_LORA_A gives the same bytes, and so does the choice
// autotuning times (fused against two dispatches), which it caches. Suite kernels_matmul.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <unistd.h>
#include <optional>
#include <string>
#include <vector>

#include "engine/base/half.hpp"
#include "engine/kernels/autotune.hpp"
#include "engine/kernels/matmul_lora_a.hpp"
#include "engine/quant/device.hpp"
#include "engine/quant/quantize.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using kernels::DType;
using kernels::WeightFormat;
using test::context;
using test::Guarded;

namespace {

struct LoraACase {
  // Forward (nt): y (m, n) = x (m, k) · W (n, k)ᵀ (+ bias); t (m, rank) = x · A (rank, k)ᵀ.
  // Backward (nn): dx (m, k) = dy (m, n) · W (n, k) + beta · dx; dt (m, rank) = scale · dy · B (n, rank).
  uint32_t m = 1, n = 1, k = 1, rank = 1;
  DType act = DType::f32;  // x/dy, y/dx and t/dt storage
  bool bias = false;       // forward only
  bool nf4 = false;        // W quantized to NF4 with double quantization (QLoRA)
  bool tiled = false;      // the GPU body (VKT_DISABLE_MATMUL_DIRECT)
  // The default tiles; otherwise the smallest (VKT_DISABLE_MATMUL_LARGE_TILES): the fusion does not
  // depend on the tile size, and lavapipe compiles the small ones several times faster.
  bool default_tiles = false;
  bool backward = false;
  float beta = 0;  // backward only: accumulate into dx
};

struct Outputs {
  std::vector<uint8_t> y, t;
};

enum class Way { fused, kill_switch, separate };

constexpr float lora_scale = 0.75f;  // the backward's dt scale

Outputs run_products(const LoraACase& c, const std::vector<float>& input, const kernels::WeightRef& w,
                     const std::vector<float>& lora, const std::vector<float>& bias, const std::vector<float>& y0,
                     Way way) {
  Guarded input_buffer = Guarded::of_raw(test::stored_bytes(input, c.act), "x");
  Guarded lora_buffer = Guarded::of(lora, "LoRA");
  Guarded bias_buffer = Guarded::of(bias, "bias");
  // t starts as NaN: it is overwritten, never read; y too unless beta accumulates into it.
  std::vector<float> nan_t(size_t(c.m) * c.rank, NAN);
  Guarded y = Guarded::of_raw(test::stored_bytes(y0, c.act), "y");
  Guarded t = Guarded::of_raw(test::stored_bytes(nan_t, c.act), "t");
  std::optional<test::ScopedEnv> off;
  if (way == Way::kill_switch) off.emplace("VKT_DISABLE_FUSED_LORA_A", "1");
  vk::BufferRange bias_range = bias_buffer.range();
  const vk::BufferRange* bias_pointer = c.bias ? &bias_range : nullptr;
  kernels::WeightRef lora_ref = kernels::dense_f32(lora_buffer.range());
  context().run([&](vk::Recorder& r) {
    if (way == Way::separate && !c.backward) {
      kernels::matmul_nt(r, input_buffer.range(), c.act, w, y.range(), c.act, c.m, c.n, c.k, 1.0f, 0.0f, bias_pointer);
      kernels::matmul_nt(r, input_buffer.range(), c.act, lora_ref, t.range(), c.act, c.m, c.rank, c.k);
    } else if (way == Way::separate) {
      kernels::matmul_nn(r, input_buffer.range(), c.act, w, y.range(), c.act, c.m, c.n, c.k, 1.0f, c.beta);
      kernels::matmul_nn(r, input_buffer.range(), c.act, lora_ref, t.range(), c.act, c.m, c.n, c.rank, lora_scale);
    } else if (!c.backward) {
      kernels::matmul_nt_lora_a(r, input_buffer.range(), c.act, w, y.range(), c.act, c.m, c.n, c.k, bias_pointer,
                                {lora_buffer.range(), t.range(), c.rank});
    } else {
      kernels::matmul_nn_lora_b(r, input_buffer.range(), c.act, w, y.range(), c.act, c.m, c.n, c.k, c.beta,
                                {lora_buffer.range(), t.range(), c.rank, lora_scale});
    }
  });
  CHECK(y.guard_intact());
  CHECK(t.guard_intact());
  return {y.read<uint8_t>(), t.read<uint8_t>()};
}

double largest(const std::vector<float>& values) {
  double most = 1.0;
  for (float value : values) most = std::max(most, double(std::fabs(value)));
  return most;
}

void check_case(const LoraACase& c, uint32_t seed) {
  std::string what = std::string(c.backward ? "nn" : "nt") + " M=" + std::to_string(c.m) + " N=" +
                     std::to_string(c.n) + " K=" + std::to_string(c.k) + " r=" + std::to_string(c.rank) + " " +
                     kernels::dtype_name(c.act) + (c.bias ? " bias" : "") + (c.nf4 ? " nf4+dq" : "") +
                     (c.tiled ? " tiled" : "") + " beta=" + std::to_string(c.beta);
  INFO(what);
  std::optional<test::ScopedEnv> tiled;
  if (c.tiled) tiled.emplace("VKT_DISABLE_MATMUL_DIRECT", "1");
  std::optional<test::ScopedEnv> small_tiles;
  if (!c.default_tiles) small_tiles.emplace("VKT_DISABLE_MATMUL_LARGE_TILES", "1");
  uint32_t input_cols = c.backward ? c.n : c.k, output_cols = c.backward ? c.k : c.n;
  auto input = test::as_stored(test::random_floats(size_t(c.m) * input_cols, seed), c.act);
  auto w = test::random_floats(size_t(c.n) * c.k, seed + 1);
  auto lora = test::random_floats(size_t(c.rank) * input_cols, seed + 2);  // A (rank, k) or B (n, rank)
  auto bias = test::random_floats(c.n, seed + 3);
  std::vector<float> y0(size_t(c.m) * output_cols, NAN);
  if (c.beta != 0) y0 = test::as_stored(test::random_floats(y0.size(), seed + 4), c.act);
  std::optional<quant::DeviceWeight> quantized;
  Guarded w_buffer = Guarded::of(w, "W");
  kernels::WeightRef w_ref = kernels::dense_f32(w_buffer.range());
  if (c.nf4) {
    quant::QuantizedWeight q = quant::quantize(w.data(), c.n, c.k, WeightFormat::nf4, {64, true}, "W");
    w = quant::dequantize(q);  // the reference multiplies what the kernel dequantizes
    quantized.emplace(quant::upload(context(), q, "W"));
    w_ref = quantized->ref;
  }
  Outputs fused = run_products(c, input, w_ref, lora, bias, y0, Way::fused);
  Outputs separate = run_products(c, input, w_ref, lora, bias, y0, Way::separate);
  Outputs switched_off = run_products(c, input, w_ref, lora, bias, y0, Way::kill_switch);
  CHECK(fused.y == separate.y);
  CHECK(fused.t == separate.t);
  CHECK(switched_off.y == separate.y);
  CHECK(switched_off.t == separate.t);
  // Against the fp64 reference: fp32 accumulation, plus the 16-bit rounding of the stored outputs.
  std::vector<float> expected_y = y0, expected_t(size_t(c.m) * c.rank);
  if (c.backward) {
    ref::matmul_nn(input.data(), w.data(), expected_y.data(), c.m, c.n, c.k, 1.0f, c.beta);
    ref::matmul_nn(input.data(), lora.data(), expected_t.data(), c.m, c.n, c.rank, lora_scale, 0.0f);
  } else {
    ref::matmul_nt(input.data(), w.data(), expected_y.data(), c.m, c.n, c.k, 1.0f, 0.0f,
                   c.bias ? bias.data() : nullptr);
    ref::matmul_nt(input.data(), lora.data(), expected_t.data(), c.m, c.rank, c.k, 1.0f, 0.0f);
  }
  double storage = c.act == DType::f32 ? 0 : c.act == DType::f16 ? 1e-3 : 8e-3;
  test::check_close(test::stored_floats(fused.y, c.act), expected_y, 1e-10 + storage * storage,
                    (1e-5 + 2 * storage) * largest(expected_y), "y");
  test::check_close(test::stored_floats(fused.t, c.act), expected_t, 1e-10 + storage * storage,
                    (1e-5 + 2 * storage) * largest(expected_t), "t");
}

}  // namespace

TEST_SUITE("kernels_matmul") {

TEST_CASE("matmul_nt_lora_a: y and t against the reference and bit for bit two matmul_nt") {
  // Each case compiles the fused pipeline and the separate ones on lavapipe: few cases.
  check_case({.m = 33, .n = 70, .k = 36, .rank = 16, .bias = true, .default_tiles = true}, 1);
  check_case({.m = 7, .n = 5, .k = 3, .rank = 5}, 11);  // scalar loads; t alone would run transposed
  check_case({.m = 33, .n = 70, .k = 36, .rank = 8, .bias = true, .tiled = true}, 21);
  check_case({.m = 40, .n = 64, .k = 128, .rank = 16, .nf4 = true}, 31);
  check_case({.m = 40, .n = 64, .k = 128, .rank = 16, .nf4 = true, .tiled = true}, 41);
  if (!context().caps().storage_16bit) return;
  check_case({.m = 33, .n = 68, .k = 36, .rank = 16, .act = DType::bf16, .bias = true}, 51);
  check_case({.m = 17, .n = 40, .k = 64, .rank = 4, .act = DType::f16, .nf4 = true}, 61);
}

TEST_CASE("matmul_nn_lora_b: dx and dt against the reference and bit for bit two matmul_nn") {
  check_case({.m = 33, .n = 70, .k = 36, .rank = 16, .default_tiles = true, .backward = true}, 101);
  check_case({.m = 33, .n = 70, .k = 36, .rank = 8, .backward = true, .beta = 1.0f}, 111);  // dx accumulates
  check_case({.m = 7, .n = 5, .k = 3, .rank = 5, .tiled = true, .backward = true, .beta = 1.0f}, 121);
  // A dense W over more than one L2-sized pass (lavapipe: 512 fp32 steps): B alone would not split,
  // so there t keeps its own dispatch; NF4 is never split: fused.
  check_case({.m = 20, .n = 1100, .k = 40, .rank = 16, .backward = true}, 131);
  check_case({.m = 20, .n = 1100, .k = 64, .rank = 16, .nf4 = true, .default_tiles = true, .backward = true,
              .beta = 1.0f},
             141);
  check_case({.m = 20, .n = 1100, .k = 64, .rank = 16, .nf4 = true, .tiled = true, .backward = true}, 151);
  if (!context().caps().storage_16bit) return;
  check_case({.m = 33, .n = 64, .k = 68, .rank = 16, .act = DType::bf16, .nf4 = false, .backward = true}, 161);
}

TEST_CASE("matmul_nt_lora_a: with tuning on, fused and two dispatches are timed, the winner cached, same bytes") {
  kernels::AutotuneSettings saved = kernels::autotune_settings();
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("vktune-lora-a-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  kernels::autotune_settings().mode = kernels::AutotuneMode::on;
  kernels::autotune_settings().cache_dir = dir;
  kernels::autotune_forget_memory();
  uint64_t timed_before = kernels::autotune_counters().classes_timed;
  check_case({.m = 33, .n = 70, .k = 36, .rank = 16, .bias = true, .default_tiles = true}, 81);
  // The base product's tiles and the fusion (the separate t product's tiles too): at least two classes.
  CHECK(kernels::autotune_counters().classes_timed >= timed_before + 2);
  bool fusion_cached = false;
  for (const kernels::AutotuneEntry& entry : kernels::autotune_entries(context()))
    if (entry.shape_class.find("|second|c2_16") != std::string::npos) {
      fusion_cached = true;
      CHECK((entry.winner == "fused" || entry.winner == "separate"));
      CHECK(entry.candidate_ms.size() == 2);
    }
  CHECK(fusion_cached);
  kernels::autotune_settings() = saved;
  kernels::autotune_forget_memory();
  std::filesystem::remove_all(dir);
}

TEST_CASE("matmul_nt_lora_a: a long inner dimension is summed in passes for both products") {
  // lavapipe sums an inner dimension above 2^17 in passes (its loop limit); t's passes must add up too.
  if (context().caps().device_type != VK_PHYSICAL_DEVICE_TYPE_CPU) return;
  check_case({.m = 2, .n = 8, .k = (1u << 17) + 12, .rank = 3}, 71);
}

}  // TEST_SUITE
