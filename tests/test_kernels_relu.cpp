// relu and relu_backward (engine/kernels/relu.hpp, P-tuning's prompt encoder) against the CPU
// reference, and the backward against finite differences. Suite kernels_ops.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/kernels/relu.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

TEST_SUITE("kernels_ops") {

TEST_CASE("relu: forward vs reference, backward vs reference and finite differences") {
  for (uint32_t n : {1u, 7u, 33u, 1000u}) {
    CAPTURE(n);
    auto x = test::random_floats(n, 121, -2, 2), dy = test::random_floats(n, 122, -1, 1);
    for (float& value : x)  // away from the kink, so finite differences with a step of 1e-3 see one side
      if (std::fabs(value) < 1e-2f) value = 0.5f;
    if (n >= 7) x[3] = 0.0f;  // at 0 exactly: torch's gradient is 0
    Guarded y = Guarded::of(x, "y"), dx = Guarded::of(dy, "dx");
    context().run([&](vk::Recorder& r) {
      kernels::relu(r, y.range(), n);
      kernels::relu_backward(r, y.range(), dx.range(), n);
    });
    std::vector<float> expected = x, expected_dx = dy;
    ref::relu(expected.data(), n);
    ref::relu_backward(expected.data(), expected_dx.data(), n);
    // A max and a select: exact.
    test::check_close(y.floats(), expected, 0, 0, "y = max(x, 0)");
    test::check_close(dx.floats(), expected_dx, 0, 0, "dx = dy * (y > 0)");
    // L = Σ dy * relu(x) by finite differences of the device's dx; the one x = 0 (its central
    // difference is dy/2, the kink) is checked above against the reference and moved to 0.5 here.
    std::vector<float> away = x, analytic = dx.floats();
    if (n >= 7) away[3] = 0.5f, analytic[3] = dy[3];
    auto loss = [&](const std::vector<float>& p) {
      std::vector<float> out = p;
      ref::relu(out.data(), n);
      return test::dot(out, dy);
    };
    test::check_gradient(loss, away, analytic, 1e-3f, 1e-8, 200, "dx vs finite differences");
    CHECK(y.guard_intact());
    CHECK(dx.guard_intact());
  }
}

}  // TEST_SUITE
