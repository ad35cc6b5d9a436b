// swiglu, geglu and their backward passes (engine/kernels/activation.hpp) against the CPU reference and finite
// differences, in place too. Suite kernels_ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/kernels/activation.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;
using test::same_bits;

TEST_SUITE("kernels_ops") {

TEST_CASE("swiglu: matches the reference, saturates without NaN at large |gate|") {
  for (uint32_t n : {1u, 7u, 33u, 17u * 130u}) {
    CAPTURE(n);
    auto gate = test::random_floats(n, 61, -6, 6);
    auto up = test::random_floats(n, 62, -2, 2);
    if (n >= 7) {
      gate[0] = -100;
      gate[1] = 100;
      gate[2] = -30;
      gate[3] = 30;
      gate[4] = 0;
      gate[5] = -88;
      gate[6] = 89;
    }
    Guarded gate_buffer = Guarded::of(gate, "gate"), up_buffer = Guarded::of(up, "up"), h(n * 4, "h");
    context().run([&](vk::Recorder& r) { kernels::swiglu(r, gate_buffer.range(), up_buffer.range(), h.range(), n); });
    std::vector<float> expected(n);
    ref::swiglu(gate.data(), up.data(), expected.data(), n);
    // exp() is specified to (3 + 2|x|) ulp: ~1e-6 relative at |gate| = 6, on |h| < 12;
    // at |gate| = 100, silu is either -0 or gate exactly.
    test::check_close(h.floats(), expected, 1e-11, 2e-5, "h");
    CHECK(h.guard_intact());
    // In place over up.
    context().run(
        [&](vk::Recorder& r) { kernels::swiglu(r, gate_buffer.range(), up_buffer.range(), up_buffer.range(), n); });
    CHECK(same_bits(up_buffer.floats(), h.floats()));
  }
}

TEST_CASE("swiglu_backward: vs reference and finite differences, in place") {
  for (uint32_t n : {1u, 7u, 33u, 17u * 130u}) {
    CAPTURE(n);
    auto gate = test::random_floats(n, 71, -6, 6);
    auto up = test::random_floats(n, 72, -2, 2);
    auto dh = test::random_floats(n, 73);
    if (n >= 7) {
      gate[0] = -100;
      gate[1] = 100;
      gate[2] = -30;
      gate[3] = 30;
      gate[4] = 0;
    }
    Guarded gate_buffer = Guarded::of(gate, "gate"), up_buffer = Guarded::of(up, "up"),
            dh_buffer = Guarded::of(dh, "dh");
    Guarded d_gate(n * 4, "d_gate"), d_up(n * 4, "d_up");
    context().run([&](vk::Recorder& r) {
      kernels::swiglu_backward(r, dh_buffer.range(), gate_buffer.range(), up_buffer.range(), d_gate.range(),
                               d_up.range(), n);
    });
    std::vector<float> expected_gate(n), expected_up(n);
    ref::swiglu_backward(dh.data(), gate.data(), up.data(), expected_gate.data(), expected_up.data(), n);
    // As for the forward pass: exp's (3 + 2|x|) ulp on values of order 1.
    test::check_close(d_gate.floats(), expected_gate, 1e-11, 1e-5, "d_gate");
    test::check_close(d_up.floats(), expected_up, 1e-11, 1e-5, "d_up");
    CHECK(d_gate.guard_intact());
    CHECK(d_up.guard_intact());

    if (n <= 200) {
      auto loss_gate = [&](const std::vector<float>& probe) {
        std::vector<float> h(n);
        ref::swiglu(probe.data(), up.data(), h.data(), n);
        return test::dot(h, dh);
      };
      auto loss_up = [&](const std::vector<float>& probe) {
        std::vector<float> h(n);
        ref::swiglu(gate.data(), probe.data(), h.data(), n);
        return test::dot(h, dh);
      };
      test::check_gradient(loss_gate, gate, d_gate.floats(), 1e-2f, 1e-6, 200, "d_gate vs finite differences");
      test::check_gradient(loss_up, up, d_up.floats(), 1e-2f, 1e-6, 200, "d_up vs finite differences");
    }
    // In place: d_gate over gate, d_up over up.
    context().run([&](vk::Recorder& r) {
      kernels::swiglu_backward(r, dh_buffer.range(), gate_buffer.range(), up_buffer.range(), gate_buffer.range(),
                               up_buffer.range(), n);
    });
    CHECK(same_bits(gate_buffer.floats(), d_gate.floats()));
    CHECK(same_bits(up_buffer.floats(), d_up.floats()));
  }
}

// Gemma's GeGLU (gelu_pytorch_tanh). Large |gate| saturates tanh: gelu is -0 or gate exactly.
TEST_CASE("geglu: forward and backward vs reference and finite differences, in place, no NaN at large |gate|") {
  for (uint32_t n : {1u, 7u, 33u, 17u * 130u}) {
    CAPTURE(n);
    auto gate = test::random_floats(n, 81, -6, 6), up = test::random_floats(n, 82, -2, 2);
    auto dh = test::random_floats(n, 83);
    if (n >= 7) {
      gate[0] = -100;
      gate[1] = 100;
      gate[2] = -30;
      gate[3] = 30;
      gate[4] = 0;
      gate[5] = -60;
      gate[6] = 60;
    }
    Guarded gate_buffer = Guarded::of(gate, "gate"), up_buffer = Guarded::of(up, "up"),
            dh_buffer = Guarded::of(dh, "dh");
    Guarded h(n * 4, "h"), d_gate(n * 4, "d_gate"), d_up(n * 4, "d_up");
    context().run([&](vk::Recorder& r) {
      kernels::geglu(r, gate_buffer.range(), up_buffer.range(), h.range(), n);
      kernels::geglu_backward(r, dh_buffer.range(), gate_buffer.range(), up_buffer.range(), d_gate.range(),
                              d_up.range(), n);
    });
    std::vector<float> expected(n), expected_gate(n), expected_up(n);
    ref::geglu(gate.data(), up.data(), expected.data(), n);
    ref::geglu_backward(dh.data(), gate.data(), up.data(), expected_gate.data(), expected_up.data(), n);
    // tanh in fp32 (a few ulp) on values of order 1 (|h| < 12, |up| 2); |gate| >= 30 puts tanh's
    // argument past the clamp (+-15), where gelu is -0 or gate exactly.
    test::check_close(h.floats(), expected, 1e-11, 2e-5, "h");
    test::check_close(d_gate.floats(), expected_gate, 1e-11, 2e-5, "d_gate");
    test::check_close(d_up.floats(), expected_up, 1e-11, 2e-5, "d_up");
    for (const Guarded* buffer : {&h, &d_gate, &d_up}) CHECK(buffer->guard_intact());
    if (n <= 200) {
      auto loss = [&](const std::vector<float>& probe_gate, const std::vector<float>& probe_up) {
        std::vector<float> out(n);
        ref::geglu(probe_gate.data(), probe_up.data(), out.data(), n);
        return test::dot(out, dh);
      };
      test::check_gradient([&](const std::vector<float>& p) { return loss(p, up); }, gate, d_gate.floats(), 1e-2f, 1e-6,
                           200, "d_gate vs finite differences");
      test::check_gradient([&](const std::vector<float>& p) { return loss(gate, p); }, up, d_up.floats(), 1e-2f, 1e-6,
                           200, "d_up vs finite differences");
    }
    // In place: h over up; d_gate over gate, d_up over up.
    Guarded up_copy = Guarded::of(up, "up copy");
    context().run([&](vk::Recorder& r) {
      kernels::geglu(r, gate_buffer.range(), up_copy.range(), up_copy.range(), n);
      kernels::geglu_backward(r, dh_buffer.range(), gate_buffer.range(), up_buffer.range(), gate_buffer.range(),
                              up_buffer.range(), n);
    });
    CHECK(same_bits(up_copy.floats(), h.floats()));
    CHECK(same_bits(gate_buffer.floats(), d_gate.floats()));
    CHECK(same_bits(up_buffer.floats(), d_up.floats()));
  }
}

}  // TEST_SUITE
