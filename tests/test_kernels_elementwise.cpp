// scale and add (engine/kernels/elementwise.hpp) against the CPU reference, in place too.
// Suite kernels_ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/kernels/elementwise.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;
using test::same_bits;

TEST_SUITE("kernels_ops") {

TEST_CASE("scale: by a constant and by a factor in device memory") {
  for (uint32_t n : {1u, 7u, 1000u}) {
    CAPTURE(n);
    auto x = test::random_floats(n, 91, -3, 3);
    Guarded plain = Guarded::of(x, "x"), scaled = Guarded::of(x, "x2"), factor = Guarded::of({0.25f}, "factor");
    const vk::BufferRange factor_range = factor.range();
    context().run([&](vk::Recorder& r) {
      kernels::scale(r, plain.range(), n, -1.5f);
      kernels::scale(r, scaled.range(), n, 3.0f, &factor_range);
    });
    std::vector<float> expected = x, expected_factor = x;
    ref::scale(expected.data(), n, -1.5f);
    float quarter = 0.25f;
    ref::scale(expected_factor.data(), n, 3.0f, &quarter);
    // One fp32 multiply (two with the factor: 3 * 0.25 is exact): exact.
    test::check_close(plain.floats(), expected, 0, 0, "x * s");
    test::check_close(scaled.floats(), expected_factor, 0, 0, "x * s * factor");
    CHECK(plain.guard_intact());
    CHECK(scaled.guard_intact());
  }
}

TEST_CASE("softcap: x = cap * tanh(x / cap), saturating without NaN") {
  for (uint32_t n : {1u, 7u, 1000u}) {
    CAPTURE(n);
    auto x = test::random_floats(n, 92, -100, 100);
    if (n >= 7) {
      x[0] = 1e30f;
      x[1] = -1e30f;
      x[2] = 0;
    }
    Guarded buffer = Guarded::of(x, "x");
    context().run([&](vk::Recorder& r) { kernels::softcap(r, buffer.range(), n, 30.0f); });
    std::vector<float> expected = x;
    ref::softcap(expected.data(), n, 30.0f);
    // fp32 tanh to a few ulp, times 30: ~1e-5 on values up to 30.
    test::check_close(buffer.floats(), expected, 1e-12, 2e-5, "softcap");
    CHECK(buffer.guard_intact());
  }
}

TEST_CASE("add: out = a + b, also in place") {
  for (uint32_t n : {1u, 33u, 1000u}) {
    CAPTURE(n);
    auto a = test::random_floats(n, 101), b = test::random_floats(n, 102);
    Guarded a_buffer = Guarded::of(a, "a"), b_buffer = Guarded::of(b, "b"), out(n * 4, "out");
    context().run([&](vk::Recorder& r) { kernels::add(r, a_buffer.range(), b_buffer.range(), out.range(), n); });
    std::vector<float> expected(n);
    ref::add(a.data(), b.data(), expected.data(), n);
    test::check_close(out.floats(), expected, 0, 0, "a + b");  // one correctly rounded fp32 add
    CHECK(out.guard_intact());
    context().run([&](vk::Recorder& r) { kernels::add(r, a_buffer.range(), b_buffer.range(), a_buffer.range(), n); });
    CHECK(same_bits(a_buffer.floats(), out.floats()));
  }
}

}  // TEST_SUITE
