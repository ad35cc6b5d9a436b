// tanh and tanh_backward (engine/kernels/tanh.hpp, prefix tuning's prefix encoder) against the CPU
// reference, and the backward against finite differences. Suite kernels_ops.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/kernels/tanh.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

TEST_SUITE("kernels_ops") {

TEST_CASE("tanh: forward vs reference, backward vs reference and finite differences") {
  for (uint32_t n : {1u, 7u, 33u, 1000u}) {
    CAPTURE(n);
    auto x = test::random_floats(n, 131, -3, 3), dy = test::random_floats(n, 132, -1, 1);
    if (n >= 7) x[2] = 0.0f, x[4] = 60.0f, x[5] = -90.0f;  // 0, and saturated far past exp's fp32 range
    Guarded y = Guarded::of(x, "y"), dx = Guarded::of(dy, "dx");
    context().run([&](vk::Recorder& r) {
      kernels::tanh(r, y.range(), n);
      kernels::tanh_backward(r, y.range(), dx.range(), n);
    });
    std::vector<float> expected = x, expected_dx = dy;
    ref::tanh(expected.data(), n);
    ref::tanh_backward(expected.data(), expected_dx.data(), n);
    // tanh from one fp32 exp (a few ulp) and a division: within 1e-6 absolute of the double reference.
    test::check_close(y.floats(), expected, 1e-12, 1e-6, "y = tanh(x)");
    if (n >= 7) {
      CHECK(y.floats()[4] == 1.0f);
      CHECK(y.floats()[5] == -1.0f);
      CHECK(y.floats()[2] == 0.0f);
    }
    // dy (1 - y²) from the device's y vs the reference's y: the same few ulp, times |dy| <= 1.
    test::check_close(dx.floats(), expected_dx, 1e-12, 2e-6, "dx = dy (1 - y^2)");
    // L = Σ dy * tanh(x) by central differences of the reference forward vs the device's dx.
    auto loss = [&](const std::vector<float>& p) {
      std::vector<float> out = p;
      ref::tanh(out.data(), n);
      return test::dot(out, dy);
    };
    test::check_gradient(loss, x, dx.floats(), 1e-3f, 1e-8, 200, "dx vs finite differences");
    CHECK(y.guard_intact());
    CHECK(dx.guard_intact());
  }
}

}  // TEST_SUITE
