// DoRA's kernels (engine/kernels/dora.hpp) and the layer composed from them (engine/model/dora.hpp)
// against the CPU references; the layer's backward also against finite differences of the forward
// with the norm held constant, as PEFT detaches it. Suite kernels_ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "engine/kernels/dora.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/kernels/random.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/model/dora.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"
#include "tests/support.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {
void check_dora_linear(float dropout) {
  const uint32_t rows = 7, in = 33, out = 20, rank = 3;
  const float s = 2.0f;
  auto x = test::random_floats(rows * in, 321, -1, 1), w = test::random_floats(out * in, 322, -0.3f, 0.3f);
  auto a = test::random_floats(rank * in, 323, -0.2f, 0.2f), b = test::random_floats(out * rank, 324, -0.2f, 0.2f);
  auto m = test::random_floats(out, 325, 0.5f, 1.5f), bias = test::random_floats(out, 326, -0.5f, 0.5f);
  auto dy = test::random_floats(rows * out, 327, -1, 1);
  Guarded xb = Guarded::of(x, "x"), wb = Guarded::of(w, "w"), ab = Guarded::of(a, "a"), bb = Guarded::of(b, "b");
  Guarded mb = Guarded::of(m, "m"), biasb = Guarded::of(bias, "bias"), dyb = Guarded::of(dy, "dy");
  Guarded y(rows * out * 4, "y"), dx(rows * in * 4, "dx"), ga = Guarded::of(std::vector<float>(rank * in, 0), "ga");
  Guarded gb = Guarded::of(std::vector<float>(out * rank, 0), "gb"), gm = Guarded::of(std::vector<float>(out, 0), "gm");
  Guarded t(rows * rank * 4, "t"), dt(rows * rank * 4, "dt"), v(rows * out * 4, "v"), scales(3 * out * 4, "scales");
  Guarded weight(out * in * 4, "W'"), grad(rows * (out + in) * 4, "dv"), state(256, "state");
  Guarded dropped(rows * in * 4, "dropout(x)"), keep_buffer = Guarded::of(std::vector<float>(rows * in, 1.0f), "keep");
  Guarded workspace(kernels::sum_rows_workspace_bytes(rows, out), "workspace");
  model::LoraParams lora{ab.range(), bb.range(), ga.range(), gb.range(), rank, s, dropout, 5, mb.range(), gm.range()};
  const model::Linear layer{
      .weight = kernels::dense_f32(wb.range()), .bias = biasb.range(), .in = in, .out = out, .lora = &lora};
  const model::LinearScratch scratch{.lora_t = t.range(),
                                     .grad_lora_t = dt.range(),
                                     .dropout_x = dropped.range(),
                                     .step_state = state.range(),
                                     .reduce_workspace = workspace.range(),
                                     .dora_v = v.range(),
                                     .dora_scales = scales.range(),
                                     .dora_weight = weight.range(),
                                     .dora_grad = grad.range()};
  context().run([&](vk::Recorder& r) {  // the mask the layer draws: dropout of ones, same key and step
    if (dropout > 0)
      kernels::dropout(r, keep_buffer.range(), keep_buffer.range(), kernels::DType::f32, rows * in, dropout, 5,
                       state.range());
    model::linear_forward(r, layer, xb.range(), y.range(), rows, scratch);
    model::linear_backward(r, layer, xb.range(), dyb.range(), dx.range(), false, rows, scratch);
  });
  const std::vector<float> keep_values = keep_buffer.floats();
  const float* keep = dropout > 0 ? keep_values.data() : nullptr;
  if (dropout > 0) CHECK(std::count(keep_values.begin(), keep_values.end(), 0.0f) > 0);
  std::vector<float> ey(rows * out), edx(rows * in), ega(rank * in), egb(out * rank), egm(out);
  ref::dora_linear_forward(x.data(), w.data(), bias.data(), a.data(), b.data(), m.data(), keep, ey.data(), rows, in,
                           out, rank, s);
  ref::dora_linear_backward(x.data(), w.data(), a.data(), b.data(), m.data(), keep, dy.data(), edx.data(), ega.data(),
                            egb.data(), egm.data(), rows, in, out, rank, s);
  // fp32 matmuls and norms of <= 33 terms against the double reference.
  test::check_close(y.floats(), ey, 1e-11, 1e-5, "y");
  test::check_close(dx.floats(), edx, 1e-11, 1e-5, "dx");
  test::check_close(ga.floats(), ega, 1e-11, 1e-5, "dA");
  test::check_close(gb.floats(), egb, 1e-11, 1e-5, "dB");
  test::check_close(gm.floats(), egm, 1e-11, 1e-5, "dm");
  // Finite differences of L = Σ dy ⊙ y with ‖W + s·B·A‖ frozen at the current A, B (detached).
  std::vector<double> norm(out);
  for (uint32_t o = 0; o < out; o++) {
    std::vector<float> ones(1, 1.0f), row(in), inv(1), scale(1);
    for (uint32_t i = 0; i < in; i++) {
      double sum = w[o * in + i];
      for (uint32_t k = 0; k < rank; k++) sum += s * double(b[o * rank + k]) * a[k * in + i];
      row[i] = static_cast<float>(sum);
    }
    ref::dora_norm(row.data(), ones.data(), inv.data(), scale.data(), 1, in, false);
    norm[o] = 1.0 / inv[0];
  }
  auto loss = [&](const std::vector<float>& xs, const std::vector<float>& as, const std::vector<float>& bs,
                  const std::vector<float>& ms) {
    std::vector<float> dropped_x = xs, vs(rows * out), base(rows * out), dropped_base(rows * out);
    if (keep)
      for (size_t i = 0; i < dropped_x.size(); i++) dropped_x[i] = xs[i] * keep[i];
    ref::lora_linear_forward(dropped_x.data(), w.data(), nullptr, as.data(), bs.data(), nullptr, vs.data(), rows, in,
                             out, rank, s);
    ref::matmul_nt(xs.data(), w.data(), base.data(), rows, out, in, 1.0f, 0.0f);
    ref::matmul_nt(dropped_x.data(), w.data(), dropped_base.data(), rows, out, in, 1.0f, 0.0f);
    double sum = 0;  // y = x·Wᵀ + b + (g - 1)·(x_d·Wᵀ) + g·s·(x_d·Aᵀ)·Bᵀ with g = m / ‖W + s·B·A‖ frozen
    for (size_t i = 0; i < vs.size(); i++)
      sum += dy[i] * (vs[i] * ms[i % out] / norm[i % out] + base[i] - dropped_base[i] + bias[i % out]);
    return sum;
  };
  test::check_gradient([&](const std::vector<float>& p) { return loss(p, a, b, m); }, x, dx.floats(), 1e-2f, 1e-6, 200,
                       "dx vs finite differences");
  test::check_gradient([&](const std::vector<float>& p) { return loss(x, p, b, m); }, a, ga.floats(), 1e-2f, 1e-6, 200,
                       "dA vs finite differences");
  test::check_gradient([&](const std::vector<float>& p) { return loss(x, a, p, m); }, b, gb.floats(), 1e-2f, 1e-6, 200,
                       "dB vs finite differences");
  test::check_gradient([&](const std::vector<float>& p) { return loss(x, a, b, p); }, m, gm.floats(), 1e-2f, 1e-6, 200,
                       "dm vs finite differences");
  for (const Guarded* g : {&y, &dx, &ga, &gb, &gm, &v, &scales, &weight, &grad, &dropped}) CHECK(g->guard_intact());
}

}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("dora_norm: row norms, scales and the initial magnitude vs reference") {
  for (auto shape : {std::pair{1u, 1u}, std::pair{7u, 33u}, std::pair{65u, 300u}}) {
    const uint32_t rows = shape.first, cols = shape.second;
    CAPTURE(rows);
    CAPTURE(cols);
    auto weight = test::random_floats(rows * cols, 301, -1, 1), magnitude = test::random_floats(rows, 302, 0.5f, 2);
    Guarded w = Guarded::of(weight, "weight"), m = Guarded::of(magnitude, "m"), m_init(rows * 4, "m init");
    Guarded inv(rows * 4, "inv"), scale(rows * 4, "scale"), inv_init(rows * 4, "inv init"), s_init(rows * 4, "s init");
    context().run([&](vk::Recorder& r) {
      kernels::dora_norm(r, w.range(), m.range(), inv.range(), scale.range(), rows, cols);
      kernels::dora_norm(r, w.range(), m_init.range(), inv_init.range(), s_init.range(), rows, cols, true);
    });
    std::vector<float> expected_inv(rows), expected_scale(rows), expected_m(rows), ignored(rows);
    ref::dora_norm(weight.data(), magnitude.data(), expected_inv.data(), expected_scale.data(), rows, cols, false);
    ref::dora_norm(weight.data(), expected_m.data(), ignored.data(), ignored.data(), rows, cols, true);
    // fp32 sums of up to 300 squares in another order than the double reference: a few ulp.
    test::check_close(inv.floats(), expected_inv, 1e-12, 1e-5, "1 / norm");
    test::check_close(scale.floats(), expected_scale, 1e-12, 1e-5, "m / norm");
    test::check_close(m_init.floats(), expected_m, 1e-12, 1e-5, "initial m = norm");
    test::check_close(s_init.floats(), std::vector<float>(rows, 1.0f), 1e-12, 1e-6, "initial scale = 1");
    for (const Guarded* g : {&inv, &scale, &m_init, &inv_init, &s_init}) CHECK(g->guard_intact());
  }
}

TEST_CASE("dora_output: scaled channels plus bias vs reference") {
  const uint32_t rows = 9, cols = 37;
  auto v = test::random_floats(rows * cols, 311, -2, 2), scale = test::random_floats(cols, 312, 0.5f, 1.5f);
  auto bias = test::random_floats(cols, 313, -1, 1);
  Guarded vb = Guarded::of(v, "v"), sb = Guarded::of(scale, "scale"), bb = Guarded::of(bias, "bias");
  Guarded y(rows * cols * 4, "y"), y_plain(rows * cols * 4, "y plain");
  const vk::BufferRange bias_range = bb.range();
  context().run([&](vk::Recorder& r) {
    kernels::dora_output(r, vb.range(), sb.range(), &bias_range, y.range(), rows, cols);
    kernels::dora_output(r, vb.range(), sb.range(), nullptr, y_plain.range(), rows, cols);
  });
  std::vector<float> expected(rows * cols), expected_plain(rows * cols);
  ref::dora_output(v.data(), scale.data(), bias.data(), expected.data(), rows, cols);
  ref::dora_output(v.data(), scale.data(), nullptr, expected_plain.data(), rows, cols);
  test::check_close(y.floats(), expected, 1e-14, 1e-6, "v * scale + bias");  // one fma vs double: an ulp
  test::check_close(y_plain.floats(), expected_plain, 0, 0, "v * scale");    // one fp32 multiply: exact
  CHECK(y.guard_intact());
  CHECK(y_plain.guard_intact());
}

TEST_CASE("dora linear: forward and backward vs reference, backward vs finite differences (norm detached)") {
  for (float dropout : {0.0f, 0.3f}) {
    CAPTURE(dropout);
    check_dora_linear(dropout);
  }
}

}  // TEST_SUITE
