// The counter-based RNG (Philox4x32-10) and dropout (engine/kernels/random.hpp), bit-exact against
// the CPU reference, with guard regions after every output. Suite kernels_optim.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/base/half.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/kernels/random.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using kernels::StepState;
using test::context;
using test::same_bits;

TEST_SUITE("kernels_optim") {

TEST_CASE("random_uniform: Philox4x32-10 matches the Random123 known-answer vectors") {
  using random::philox4x32_10;
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == random::Philox4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        random::Philox4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        random::Philox4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("random_uniform: GPU bits equal CPU bits, uniform statistics") {
  const uint64_t n = (1u << 20) + 3;  // not a multiple of 4: the last Philox call is partial
  std::vector<float> expected(n);
  for (auto bounds : {std::pair{0.0f, 1.0f}, std::pair{-0.3f, 0.7f}}) {
    const float low = bounds.first, high = bounds.second;  // not a structured binding: clang 14 cannot capture one
    CAPTURE(low);
    test::Guarded out(n * 4, "uniform");
    context().run([&](vk::Recorder& r) {
      kernels::random_uniform(r, out.range(), n, 1234567u, random::stream_init, 42u, 7u, low, high);
    });
    ref::random_uniform(expected.data(), n, 1234567u, random::stream_init, 42u, 7u, low, high);
    auto actual = out.floats();
    CHECK(same_bits(actual, expected));  // integer-only generator; the affine map is `precise` fp32
    CHECK(out.guard_intact());
    if (low == 0.0f) {
      double sum = 0, square_sum = 0;
      size_t outside = 0;
      for (float u : actual) {
        outside += !(u >= 0.0f && u < 1.0f);
        sum += u;
        square_sum += double(u) * u;
      }
      CHECK(outside == 0);
      double mean = sum / n, variance = square_sum / n - mean * mean;
      // Standard error of the mean: sqrt(1/12 / n) = 2.8e-4; allow 5 of them.
      CHECK(std::fabs(mean - 0.5) < 1.5e-3);
      CHECK(std::fabs(variance - 1.0 / 12.0) < 1e-3);
    }
  }
}

TEST_CASE("dropout: mask bit-exact CPU vs GPU, keep rate 1 - p, keyed by step and layer") {
  const uint64_t n = (1u << 20) + 5;
  std::vector<float> x = test::random_floats(n, 11, 0.5f, 2.0f);  // nonzero: zeros in y mean dropped
  test::Guarded input = test::Guarded::of(x, "x");
  test::Guarded output(n * 4, "y");
  StepState state;
  state.rng_seed = 2024;
  auto step_state = test::Guarded::of_raw(std::vector<StepState>{state}, "step_state");
  vk::Sequence sequence(context());
  float p = 0;
  uint32_t layer = 0;
  std::vector<float> expected(n);
  auto run = [&](uint32_t rng_step) {
    state.rng_step = rng_step;
    step_state.upload(&state);
    sequence.record([&](vk::Recorder& r) {
      kernels::dropout(r, input.range(), output.range(), kernels::DType::f32, n, p, layer, step_state.range());
    });
    context().submit({&sequence});
    return output.floats();
  };
  for (float probability : {0.1f, 0.5f}) {
    p = probability;
    CAPTURE(p);
    layer = 3;
    auto y = run(17);
    ref::dropout(x.data(), expected.data(), n, p, layer, state.rng_seed, 17);
    CHECK(same_bits(y, expected));  // same mask, and x * scale is one correctly rounded product
    size_t kept = 0;
    for (float value : y) kept += value != 0.0f;
    double rate = double(kept) / n, sigma = std::sqrt(p * (1.0 - p) / n);
    CHECK(std::fabs(rate - (1.0 - p)) < 5 * sigma);  // 5 standard deviations of a binomial
    // Another step: a different mask, independent of the first (overlap (1-p)^2).
    auto other = run(18);
    size_t both = 0, differ = 0;
    for (size_t i = 0; i < n; i++) {
      both += y[i] != 0.0f && other[i] != 0.0f;
      differ += (y[i] != 0.0f) != (other[i] != 0.0f);
    }
    CHECK(differ > 0);
    double overlap = double(both) / n, expected_overlap = (1.0 - p) * (1.0 - p);
    CHECK(std::fabs(overlap - expected_overlap) < 5 * std::sqrt(expected_overlap * (1 - expected_overlap) / n));
    // The same step again (a recomputed forward): the same mask.
    CHECK(same_bits(run(17), y));
    // Another layer at the same step: a different mask.
    layer = 4;
    CHECK(!same_bits(run(17), y));
  }
  CHECK(output.guard_intact());
  CHECK(step_state.guard_intact());
}

TEST_CASE("dropout: backward applies the forward's mask (and matches finite differences)") {
  const uint64_t n = 4099;
  const float p = 0.3f;
  std::vector<float> x = test::random_floats(n, 12), dy = test::random_floats(n, 13);
  StepState state;
  state.rng_seed = 5;
  state.rng_step = 99;
  vk::Buffer step_state = kernels::allocate_step_state(context(), state);
  test::Guarded input = test::Guarded::of(x, "x"), output(n * 4, "y");
  test::Guarded upstream = test::Guarded::of(dy, "dy"), dx(n * 4, "dx");
  context().run([&](vk::Recorder& r) {
    kernels::dropout(r, input.range(), output.range(), kernels::DType::f32, n, p, 2, step_state.range());
    kernels::dropout_backward(r, upstream.range(), dx.range(), kernels::DType::f32, n, p, 2, step_state.range());
  });
  auto y = output.floats(), gradient = dx.floats();
  std::vector<float> expected(n);
  ref::dropout(dy.data(), expected.data(), n, p, 2, 5, 99);
  CHECK(same_bits(gradient, expected));
  for (size_t i = 0; i < n; i++) REQUIRE((y[i] == 0.0f) == (gradient[i] == 0.0f));  // x, dy have no zeros
  // Finite differences of sum(dropout(x) * dy) on a small prefix, through the GPU forward.
  const uint64_t small = 33;
  std::vector<float> small_x(x.begin(), x.begin() + small), small_dy(dy.begin(), dy.begin() + small);
  test::Guarded probe_in(small * 4, "probe_x"), probe_out(small * 4, "probe_y");
  auto loss = [&](const std::vector<float>& values) {
    probe_in.upload(values.data());
    context().run([&](vk::Recorder& r) {
      kernels::dropout(r, probe_in.range(), probe_out.range(), kernels::DType::f32, small, p, 2, step_state.range());
    });
    return test::dot(probe_out.floats(), small_dy);
  };
  std::vector<float> analytic(gradient.begin(), gradient.begin() + small);
  // Dropout is linear in x: the 4-point stencil is exact up to fp32 rounding of the forward.
  test::check_gradient(loss, small_x, analytic, 1e-2f, 1e-8, 33, "dropout dx");
  CHECK(output.guard_intact());
  CHECK(dx.guard_intact());
}

TEST_CASE("dropout: p = 0 copies, p = 1 zeroes, in place works") {
  const uint64_t n = 1001;
  std::vector<float> x = test::random_floats(n, 14);
  vk::Buffer step_state = kernels::allocate_step_state(context());
  test::Guarded data = test::Guarded::of(x, "x");
  auto in_place = [&](float p) {
    context().run([&](vk::Recorder& r) {
      kernels::dropout(r, data.range(), data.range(), kernels::DType::f32, n, p, 1, step_state.range());
    });
  };
  in_place(0.0f);
  CHECK(same_bits(data.floats(), x));
  in_place(0.25f);
  std::vector<float> expected(n);
  ref::dropout(x.data(), expected.data(), n, 0.25f, 1, 0, 0);
  CHECK(same_bits(data.floats(), expected));
  in_place(1.0f);
  for (float value : data.floats()) REQUIRE(value == 0.0f);
  CHECK(data.guard_intact());
}

TEST_CASE("dropout: f16 and bf16 storage keep the fp32 mask") {
  if (!context().caps().storage_16bit) return;
  const uint64_t n = 2053;
  const float p = 0.2f;
  std::vector<float> x = test::random_floats(n, 15, 0.5f, 2.0f);
  StepState state;
  state.rng_seed = 8;
  state.rng_step = 3;
  vk::Buffer step_state = kernels::allocate_step_state(context(), state);
  std::vector<float> rounded(n), expected(n);
  for (kernels::DType type : {kernels::DType::f16, kernels::DType::bf16}) {
    INFO(kernels::dtype_name(type));
    bool half = type == kernels::DType::f16;
    std::vector<uint16_t> bits(n);
    for (size_t i = 0; i < n; i++) {
      bits[i] = half ? float_to_half(x[i]) : float_to_bf16(x[i]);
      rounded[i] = half ? half_to_float(bits[i]) : bf16_to_float(bits[i]);
    }
    test::Guarded input = test::Guarded::of_raw(bits, "x16"), output(n * 2, "y16");
    context().run([&](vk::Recorder& r) {
      kernels::dropout(r, input.range(), output.range(), type, n, p, 6, step_state.range());
    });
    ref::dropout(rounded.data(), expected.data(), n, p, 6, 8, 3);
    std::vector<float> actual;
    for (uint16_t value : output.read<uint16_t>()) actual.push_back(half ? half_to_float(value) : bf16_to_float(value));
    for (size_t i = 0; i < n; i++) REQUIRE((actual[i] == 0.0f) == (expected[i] == 0.0f));
    // The fp32 product is rounded once more to the storage type: half an ulp of it (fp16 2^-11,
    // bf16 2^-8 relative; the max-abs bounds are for values below 2 / (1 - p) = 2.5).
    test::check_close(actual, expected, half ? 1e-7 : 1e-5, half ? 2.5 * 0x1p-11 : 2.5 * 0x1p-8, "16-bit dropout");
    CHECK(output.guard_intact());
  }
}

}  // TEST_SUITE
