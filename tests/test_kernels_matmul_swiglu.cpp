// matmul_nt_swiglu (engine/kernels/matmul.hpp): the up product with the SwiGLU in its epilogue.
// C against the fp64 reference, h bit for bit what matmul_nt + swiglu give (the same expression on
// the stored C), both shader bodies, 16-bit storage, beta = 1 (the LoRA B product that writes up
// last) and a long inner dimension (the epilogue on the last pass only); the gradient of
// sum(h * r) with respect to A by finite differences of the fused kernel. Suite kernels_matmul.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "engine/base/half.hpp"
#include "engine/kernels/activation.hpp"
#include "engine/kernels/matmul_swiglu.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using kernels::DType;
using test::context;
using test::Guarded;

namespace {

struct SwigluCase {
  uint32_t m = 1, n = 1, k = 1;  // C (m, n) = A (m, k) · W (n, k)ᵀ
  DType act = DType::f32;        // A, C, gate and h storage
  float beta = 0;
  bool tiled = false;  // the GPU body (VKT_DISABLE_MATMUL_DIRECT)
};

struct SwigluOutputs {
  std::vector<uint8_t> c, h;
};

// The fused product, or (fused false) matmul_nt then swiglu.
SwigluOutputs run_swiglu_product(const SwigluCase& t, const std::vector<float>& a, const std::vector<float>& w,
                                 const std::vector<float>& gate, const std::vector<float>& c0, bool fused) {
  Guarded a_buffer = Guarded::of_raw(test::stored_bytes(a, t.act), "a"), w_buffer = Guarded::of(w, "w");
  Guarded gate_buffer = Guarded::of_raw(test::stored_bytes(gate, t.act), "gate");
  Guarded c = Guarded::of_raw(test::stored_bytes(c0, t.act), "c");
  Guarded h(size_t(t.m) * t.n * kernels::dtype_bytes(t.act), "h");
  context().run([&](vk::Recorder& r) {
    kernels::WeightRef weight = kernels::dense_f32(w_buffer.range());
    if (fused) {
      kernels::matmul_nt_swiglu(r, a_buffer.range(), t.act, weight, c.range(), t.act, t.m, t.n, t.k, 0.75f, t.beta,
                                {gate_buffer.range(), h.range()});
    } else {
      kernels::matmul_nt(r, a_buffer.range(), t.act, weight, c.range(), t.act, t.m, t.n, t.k, 0.75f, t.beta);
      kernels::swiglu(r, gate_buffer.range(), c.range(), h.range(), t.m * t.n, t.act);
    }
  });
  CHECK(c.guard_intact());
  CHECK(h.guard_intact());
  return {c.read<uint8_t>(), h.read<uint8_t>()};
}

void check_swiglu_case(const SwigluCase& t, uint32_t seed) {
  std::string what = "M=" + std::to_string(t.m) + " N=" + std::to_string(t.n) + " K=" + std::to_string(t.k) + " " +
                     kernels::dtype_name(t.act) + " beta=" + std::to_string(t.beta) + (t.tiled ? " tiled" : "");
  INFO(what);
  std::optional<test::ScopedEnv> tiled;
  if (t.tiled) tiled.emplace("VKT_DISABLE_MATMUL_DIRECT", "1");
  auto a = test::as_stored(test::random_floats(size_t(t.m) * t.k, seed), t.act);
  auto w = test::random_floats(size_t(t.n) * t.k, seed + 1);
  auto gate = test::as_stored(test::random_floats(size_t(t.m) * t.n, seed + 2, -6, 6), t.act);
  auto c0 = test::as_stored(test::random_floats(size_t(t.m) * t.n, seed + 3), t.act);
  SwigluOutputs fused = run_swiglu_product(t, a, w, gate, c0, true);
  SwigluOutputs separate = run_swiglu_product(t, a, w, gate, c0, false);
  // The same product and the same h expression on the same stored C: identical bytes.
  CHECK(fused.c == separate.c);
  CHECK(fused.h == separate.h);
  // Against the fp64 reference: C within fp32 accumulation (+ 16-bit storage) error; h from the
  // stored C within exp's few ulp (and its own 16-bit rounding).
  std::vector<float> expected_c = c0;
  ref::matmul_nt(a.data(), w.data(), expected_c.data(), t.m, t.n, t.k, 0.75f, t.beta);
  std::vector<float> c = test::stored_floats(fused.c, t.act), expected_h(c.size());
  ref::swiglu(gate.data(), c.data(), expected_h.data(), c.size());
  double storage = t.act == DType::f32 ? 0 : t.act == DType::f16 ? 1e-3 : 8e-3;
  auto largest = [](const std::vector<float>& values) {
    double most = 1.0;
    for (float value : values) most = std::max(most, double(std::fabs(value)));
    return most;
  };
  test::check_close(c, expected_c, 1e-10 + storage * storage, (1e-5 + 2 * storage) * largest(expected_c), "C");
  test::check_close(test::stored_floats(fused.h, t.act), expected_h, 1e-10 + storage * storage,
                    (1e-5 + 2 * storage) * largest(expected_h), "h");
}

}  // namespace

TEST_SUITE("kernels_matmul") {

TEST_CASE("matmul_nt_swiglu: C and h against the reference and bit for bit matmul_nt + swiglu") {
  // Each case compiles two pipelines per body on lavapipe (the fused one and matmul_nt's): few cases.
  check_swiglu_case({.m = 33, .n = 70, .k = 36}, 1);
  check_swiglu_case({.m = 7, .n = 5, .k = 3, .beta = 1.0f}, 11);  // transposed tiles; LoRA B: accumulates
  check_swiglu_case({.m = 33, .n = 70, .k = 36, .beta = 1.0f, .tiled = true}, 21);
  if (!context().caps().storage_16bit) return;
  check_swiglu_case({.m = 33, .n = 68, .k = 36, .act = DType::bf16}, 31);
  check_swiglu_case({.m = 17, .n = 40, .k = 20, .act = DType::f16, .beta = 1.0f}, 41);
}

TEST_CASE("matmul_nt_swiglu: the epilogue runs on the last of several inner passes") {
  // lavapipe sums an inner dimension above 2^17 in passes; h must come from the full sum.
  if (context().caps().device_type != VK_PHYSICAL_DEVICE_TYPE_CPU) return;
  check_swiglu_case({.m = 2, .n = 8, .k = (1u << 17) + 12}, 51);
}

TEST_CASE("matmul_nt_swiglu: gradient of sum(h * r) with respect to A by finite differences") {
  const uint32_t m = 5, n = 12, k = 9;
  auto a = test::random_floats(size_t(m) * k, 61);
  auto w = test::random_floats(size_t(n) * k, 62);
  auto gate = test::random_floats(size_t(m) * n, 63, -4, 4);
  auto r = test::random_floats(size_t(m) * n, 64);
  Guarded w_buffer = Guarded::of(w, "w"), gate_buffer = Guarded::of(gate, "gate");
  auto loss = [&](const std::vector<float>& probe) {
    Guarded a_buffer = Guarded::of(probe, "a"), c(size_t(m) * n * 4, "c"), h(size_t(m) * n * 4, "h");
    context().run([&](vk::Recorder& rec) {
      kernels::matmul_nt_swiglu(rec, a_buffer.range(), DType::f32, kernels::dense_f32(w_buffer.range()), c.range(),
                                DType::f32, m, n, k, 1.0f, 0.0f, {gate_buffer.range(), h.range()});
    });
    double sum = 0;
    std::vector<float> values = h.floats();
    for (size_t i = 0; i < values.size(); i++) sum += double(values[i]) * r[i];
    return sum;
  };
  // Analytic (the backward the model records: swiglu_backward's d_up, then matmul_nn's dX), from the
  // references: d_up = r * silu(gate), dA = d_up · W.
  std::vector<float> c(size_t(m) * n), h(size_t(m) * n), d_gate(size_t(m) * n), d_up(size_t(m) * n);
  ref::matmul_nt(a.data(), w.data(), c.data(), m, n, k, 1.0f, 0.0f);
  ref::swiglu_backward(r.data(), gate.data(), c.data(), d_gate.data(), d_up.data(), c.size());
  std::vector<float> d_a(size_t(m) * k);
  ref::matmul_nn(d_up.data(), w.data(), d_a.data(), m, n, k, 1.0f, 0.0f);
  // fp32 forward, step 1e-2 on values of order 1: the 4-point stencil's error is far below 1e-6 NMSE.
  test::check_gradient(loss, a, d_a, 1e-2f, 1e-6, 16, "dA");
}

}  // TEST_SUITE
