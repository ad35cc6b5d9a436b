// lstm_cell and lstm_cell_backward (engine/kernels/lstm_cell.hpp, P-tuning's LSTM prompt encoder)
// against the CPU reference, and the backward against finite differences of the reference forward.
// Suite kernels_ops.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/kernels/lstm_cell.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

TEST_SUITE("kernels_ops") {

TEST_CASE("lstm_cell: forward vs reference, backward vs reference and finite differences") {
  for (uint32_t hidden : {1u, 12u, 300u}) {
    for (bool has_prev : {false, true}) {
      CAPTURE(hidden);
      CAPTURE(has_prev);
      const auto pre = test::random_floats(4 * hidden, 131 + hidden, -3, 3);
      const auto bias = test::random_floats(4 * hidden, 132, -1, 1);
      const auto c_prev = test::random_floats(hidden, 133, -2, 2);
      const auto dh = test::random_floats(hidden, 134, -1, 1), dc_later = test::random_floats(hidden, 135, -1, 1);
      Guarded gates = Guarded::of(pre, "gates"), bias_hh = Guarded::of(bias, "bias_hh");
      Guarded cell_prev = Guarded::of(c_prev, "c_prev"), cell(hidden * 4, "c"), h(hidden * 4, "h"),
              h_copy(hidden * 4, "h_copy");
      Guarded dh_buffer = Guarded::of(dh, "dh"), dc = Guarded::of(dc_later, "dc"), d_gates(hidden * 16, "d_gates");
      const vk::BufferRange no_prev{};
      auto record_backward = [&](vk::Recorder& r, bool first) {
        kernels::lstm_cell_backward(r,
                                    {.gates = gates.range(),
                                     .c_prev = has_prev ? cell_prev.range() : no_prev,
                                     .c = cell.range(),
                                     .dh = dh_buffer.range(),
                                     .dc = dc.range(),
                                     .first = first,
                                     .d_gates = d_gates.range()},
                                    hidden);
      };
      context().run([&](vk::Recorder& r) {
        kernels::lstm_cell(r,
                           {gates.range(), bias_hh.range(), has_prev ? cell_prev.range() : no_prev, cell.range(),
                            h.range(), h_copy.range()},
                           hidden);
        record_backward(r, false);
      });
      std::vector<float> act = pre, c(hidden), hv(hidden), dc_ref = dc_later, dg_ref(4 * hidden);
      ref::lstm_cell(act.data(), bias.data(), has_prev ? c_prev.data() : nullptr, c.data(), hv.data(), hidden);
      ref::lstm_cell_backward(act.data(), has_prev ? c_prev.data() : nullptr, c.data(), dh.data(), dc_ref.data(), false,
                              dg_ref.data(), hidden);
      // exp/tanh in fp32 on the device vs fp64 here: a few ulp.
      test::check_close(gates.floats(), act, 1e-12, 2e-6, "activated gates");
      test::check_close(cell.floats(), c, 1e-12, 4e-6, "c");
      test::check_close(h.floats(), hv, 1e-12, 4e-6, "h");
      test::check_close(h_copy.floats(), h.floats(), 0, 0, "h copy = h");
      test::check_close(d_gates.floats(), dg_ref, 1e-12, 4e-6, "d gates");
      test::check_close(dc.floats(), dc_ref, 1e-12, 4e-6, "d c_prev");
      // L = Σ dh·h + Σ dc_later·c over the pre-activations and c_prev, by finite differences.
      std::vector<float> params = pre;
      if (has_prev) params.insert(params.end(), c_prev.begin(), c_prev.end());
      auto loss = [&](const std::vector<float>& p) {
        std::vector<float> g(p.begin(), p.begin() + 4 * hidden), cc(hidden), hh(hidden);
        ref::lstm_cell(g.data(), bias.data(), has_prev ? p.data() + 4 * hidden : nullptr, cc.data(), hh.data(), hidden);
        return test::dot(hh, dh) + test::dot(cc, dc_later);
      };
      std::vector<float> analytic = d_gates.floats();
      if (has_prev) {
        const std::vector<float> d_prev = dc.floats();
        analytic.insert(analytic.end(), d_prev.begin(), d_prev.end());
      }
      test::check_gradient(loss, params, analytic, 1e-3f, 1e-7, 200, "d gates, d c_prev vs finite differences");
      // The direction's last step: no later dc is read (NaN there must not leak in).
      std::vector<float> nan_dc(hidden, std::nanf(""));
      dc.upload(nan_dc.data());
      context().run([&](vk::Recorder& r) { record_backward(r, true); });
      std::vector<float> dc_first(hidden);
      ref::lstm_cell_backward(act.data(), has_prev ? c_prev.data() : nullptr, c.data(), dh.data(), dc_first.data(),
                              true, dg_ref.data(), hidden);
      test::check_close(d_gates.floats(), dg_ref, 1e-12, 4e-6, "d gates, first step");
      for (Guarded* g : {&gates, &cell, &h, &h_copy, &dc, &d_gates}) CHECK(g->guard_intact());
    }
  }
}

}  // TEST_SUITE
