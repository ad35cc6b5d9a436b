// scale, add and scale_channels (engine/kernels/elementwise.hpp) against the CPU reference, in place too.
// Suite kernels_ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/reduce.hpp"
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

TEST_CASE("scale_channels: per-channel scale forward vs reference, backward vs finite differences") {
  for (auto shape : {std::pair{1u, 1u}, std::pair{7u, 33u}, std::pair{65u, 127u}}) {
    const uint32_t rows = shape.first, cols = shape.second;  // named: clang 14 cannot capture bindings
    const uint32_t n = rows * cols;
    CAPTURE(rows);
    CAPTURE(cols);
    auto x = test::random_floats(n, 111, -2, 2), scale = test::random_floats(cols, 112, -1.5f, 1.5f);
    auto dy = test::random_floats(n, 113, -1, 1);
    Guarded x_buffer = Guarded::of(x, "x"), scale_buffer = Guarded::of(scale, "scale"), y(n * 4, "y");
    Guarded dy_buffer = Guarded::of(dy, "dy"), dx(n * 4, "dx"), product(n * 4, "product");
    Guarded d_scale = Guarded::of(std::vector<float>(cols, 0.5f), "d_scale");
    Guarded workspace(kernels::sum_rows_workspace_bytes(rows, cols), "workspace");
    context().run([&](vk::Recorder& r) {
      kernels::scale_channels(r, x_buffer.range(), scale_buffer.range(), y.range(), rows, cols);
      kernels::scale_channels_backward(r, dy_buffer.range(), x_buffer.range(), scale_buffer.range(), dx.range(),
                                       d_scale.range(), product.range(), workspace.range(), rows, cols, true);
    });
    std::vector<float> expected(n), expected_dx(n), expected_d_scale(cols);
    ref::scale_channels(x.data(), scale.data(), expected.data(), rows, cols);
    ref::scale_channels_backward(dy.data(), x.data(), scale.data(), expected_dx.data(), expected_d_scale.data(), rows,
                                 cols);
    for (float& value : expected_d_scale) value += 0.5f;  // accumulated onto 0.5
    // One fp32 multiply per element: exact. The column sums add rows fp32 products in another
    // order than the double reference: ~rows ulp of values up to 3.
    test::check_close(y.floats(), expected, 0, 0, "y = x * scale");
    test::check_close(dx.floats(), expected_dx, 0, 0, "dx = dy * scale");
    test::check_close(d_scale.floats(), expected_d_scale, 1e-12, 1e-5, "d_scale");
    // Gradients of L = Σ dy * y by finite differences, w.r.t. x and the scale.
    auto loss = [&](const std::vector<float>& xs, const std::vector<float>& ss) {
      std::vector<float> out(n);
      ref::scale_channels(xs.data(), ss.data(), out.data(), rows, cols);
      return test::dot(out, dy);
    };
    std::vector<float> d_scale_only = d_scale.floats();
    for (float& value : d_scale_only) value -= 0.5f;
    test::check_gradient([&](const std::vector<float>& p) { return loss(p, scale); }, x, dx.floats(), 1e-2f, 1e-6, 200,
                         "dx vs finite differences");
    test::check_gradient([&](const std::vector<float>& p) { return loss(x, p); }, scale, d_scale_only, 1e-2f, 1e-6, 200,
                         "d_scale vs finite differences");
    CHECK(y.guard_intact());
    CHECK(dx.guard_intact());
    CHECK(d_scale.guard_intact());
    CHECK(product.guard_intact());
    // In place: y over x, dx over dy.
    context().run([&](vk::Recorder& r) {
      kernels::scale_channels(r, x_buffer.range(), scale_buffer.range(), x_buffer.range(), rows, cols);
      kernels::scale_channels_backward(r, dy_buffer.range(), x_buffer.range(), scale_buffer.range(), dy_buffer.range(),
                                       d_scale.range(), product.range(), workspace.range(), rows, cols, false);
    });
    CHECK(same_bits(x_buffer.floats(), y.floats()));
    CHECK(same_bits(dy_buffer.floats(), dx.floats()));
  }
}

}  // TEST_SUITE
