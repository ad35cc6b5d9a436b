// relu, tanh and their backwards (engine/kernels/relu.hpp, the prompt-learning encoders) against the
// CPU reference, and the backwards against finite differences. Suite kernels_ops.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/kernels/relu.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {
// y = forward(x) and dx = backward(y, dy) on the device, both in place; the guards checked.
using Forward = void (*)(vk::Recorder&, const vk::BufferRange&, uint32_t);
using Backward = void (*)(vk::Recorder&, const vk::BufferRange&, const vk::BufferRange&, uint32_t);
std::pair<std::vector<float>, std::vector<float>> run_activation(Forward forward, Backward backward,
                                                                 const std::vector<float>& x,
                                                                 const std::vector<float>& dy) {
  const auto n = static_cast<uint32_t>(x.size());
  Guarded y = Guarded::of(x, "y"), dx = Guarded::of(dy, "dx");
  context().run([&](vk::Recorder& r) {
    forward(r, y.range(), n);
    backward(r, y.range(), dx.range(), n);
  });
  CHECK(y.guard_intact());
  CHECK(dx.guard_intact());
  return {y.floats(), dx.floats()};
}
}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("relu: forward vs reference, backward vs reference and finite differences") {
  for (uint32_t n : {1u, 7u, 33u, 1000u}) {
    CAPTURE(n);
    auto x = test::random_floats(n, 121, -2, 2), dy = test::random_floats(n, 122, -1, 1);
    for (float& value : x)  // away from the kink, so finite differences with a step of 1e-3 see one side
      if (std::fabs(value) < 1e-2f) value = 0.5f;
    if (n >= 7) x[3] = 0.0f;  // at 0 exactly: torch's gradient is 0
    const auto outputs = run_activation(kernels::relu, kernels::relu_backward, x, dy);
    const std::vector<float>&y = outputs.first, &dx = outputs.second;
    std::vector<float> expected = x, expected_dx = dy;
    ref::relu(expected.data(), n);
    ref::relu_backward(expected.data(), expected_dx.data(), n);
    // A max and a select: exact.
    test::check_close(y, expected, 0, 0, "y = max(x, 0)");
    test::check_close(dx, expected_dx, 0, 0, "dx = dy * (y > 0)");
    // L = Σ dy * relu(x) by finite differences of the device's dx; the one x = 0 (its central
    // difference is dy/2, the kink) is checked above against the reference and moved to 0.5 here.
    std::vector<float> away = x, analytic = dx;
    if (n >= 7) away[3] = 0.5f, analytic[3] = dy[3];
    auto loss = [&](const std::vector<float>& p) {
      std::vector<float> out = p;
      ref::relu(out.data(), n);
      return test::dot(out, dy);
    };
    test::check_gradient(loss, away, analytic, 1e-3f, 1e-8, 200, "dx vs finite differences");
  }
}

TEST_CASE("tanh: forward vs reference, backward vs reference and finite differences") {
  for (uint32_t n : {1u, 7u, 33u, 1000u}) {
    CAPTURE(n);
    auto x = test::random_floats(n, 131, -3, 3), dy = test::random_floats(n, 132, -1, 1);
    if (n >= 7) x[2] = 0.0f, x[4] = 60.0f, x[5] = -90.0f;  // 0, and saturated far past exp's fp32 range
    const auto outputs = run_activation(kernels::tanh, kernels::tanh_backward, x, dy);
    const std::vector<float>&y = outputs.first, &dx = outputs.second;
    std::vector<float> expected = x, expected_dx = dy;
    ref::tanh(expected.data(), n);
    ref::tanh_backward(expected.data(), expected_dx.data(), n);
    // tanh from one fp32 exp (a few ulp) and a division: within 1e-6 absolute of the double reference.
    test::check_close(y, expected, 1e-12, 1e-6, "y = tanh(x)");
    if (n >= 7) {
      CHECK(y[4] == 1.0f);
      CHECK(y[5] == -1.0f);
      CHECK(y[2] == 0.0f);
    }
    // dy (1 - y²) from the device's y vs the reference's y: the same few ulp, times |dy| <= 1.
    test::check_close(dx, expected_dx, 1e-12, 2e-6, "dx = dy (1 - y^2)");
    // L = Σ dy * tanh(x) by central differences of the reference forward vs the device's dx.
    auto loss = [&](const std::vector<float>& p) {
      std::vector<float> out = p;
      ref::tanh(out.data(), n);
      return test::dot(out, dy);
    };
    test::check_gradient(loss, x, dx, 1e-3f, 1e-8, 200, "dx vs finite differences");
  }
}

}  // TEST_SUITE
