// rmsnorm and rmsnorm_backward (engine/kernels/norm.hpp) against the CPU reference and finite
// differences, at every tested workgroup size; more than 65535 rows. Suite kernels_ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/kernels/norm.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;
using test::same_bits;

TEST_SUITE("kernels_ops") {

TEST_CASE("rmsnorm: matches the reference for odd and long rows, in place too") {
  struct Shape {
    uint32_t rows, cols;
  };
  for (const std::string& threads : test::row_thread_settings())
    // {416, 128}: Qwen3's q_norm, rows of head_dim, one per (token, head).
    for (Shape shape : {Shape{1, 7}, Shape{3, 33}, Shape{17, 130}, Shape{2, 257}, Shape{3, 8192}, Shape{416, 128}}) {
      for (float eps : {1e-5f, 1e-6f}) {
        CAPTURE(threads);
        CAPTURE(shape.rows);
        CAPTURE(shape.cols);
        CAPTURE(eps);
        test::ScopedEnv row_threads("VKT_ROW_THREADS", threads);
        auto x = test::random_floats(size_t(shape.rows) * shape.cols, 41, -3, 3);
        auto weight = test::random_floats(shape.cols, 42, 0.5f, 1.5f);
        Guarded x_buffer = Guarded::of(x, "x"), weight_buffer = Guarded::of(weight, "weight");
        Guarded y(x.size() * 4, "y"), rstd(shape.rows * 4, "rstd");
        context().run([&](vk::Recorder& r) {
          kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), y.range(), rstd.range(), shape.rows, shape.cols,
                           eps);
        });
        std::vector<float> expected(x.size()), expected_rstd(shape.rows);
        ref::rmsnorm(x.data(), weight.data(), expected.data(), expected_rstd.data(), shape.rows, shape.cols, eps);
        // fp32 sum of squares in a tree vs double: relative error ~1e-7 of rstd; |y| < 5.
        test::check_close(y.floats(), expected, 1e-12, 4e-6, "y");
        test::check_close(rstd.floats(), expected_rstd, 1e-12, 1e-6, "rstd");
        CHECK(y.guard_intact());
        CHECK(rstd.guard_intact());
        // In place: y = x.
        context().run([&](vk::Recorder& r) {
          kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), x_buffer.range(), rstd.range(), shape.rows,
                           shape.cols, eps);
        });
        CHECK(same_bits(x_buffer.floats(), y.floats()));
        CHECK(x_buffer.guard_intact());
      }
    }
}

TEST_CASE("rmsnorm: a NaN stays in its own row") {
  uint32_t rows = 3, cols = 33;
  auto x = test::random_floats(size_t(rows) * cols, 43);
  x[cols + 5] = NAN;
  auto weight = test::random_floats(cols, 44, 0.5f, 1.5f);
  Guarded x_buffer = Guarded::of(x, "x"), weight_buffer = Guarded::of(weight, "weight");
  Guarded y(x.size() * 4, "y"), rstd(rows * 4, "rstd");
  context().run([&](vk::Recorder& r) {
    kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), y.range(), rstd.range(), rows, cols, 1e-5f);
  });
  auto out = y.floats();
  for (uint32_t c = 0; c < cols; c++) {
    CHECK(std::isfinite(out[c]));
    CHECK(std::isnan(out[cols + c]));  // the NaN reaches the sum of squares of row 1 only
    CHECK(std::isfinite(out[2 * cols + c]));
  }
}

TEST_CASE("rmsnorm_backward: dx and d_weight vs reference and finite differences; accumulation; in place") {
  struct Shape {
    uint32_t rows, cols;
  };
  // rows 600: the weight gradient's column sum spans several 256-row blocks. {520, 16}: Qwen3's
  // q_norm/k_norm, rows of head_dim (one per token and head), as the model_hf test's head_dim.
  for (const std::string& threads : test::row_thread_settings())
    for (Shape shape : {Shape{1, 7}, Shape{3, 33}, Shape{17, 130}, Shape{600, 7}, Shape{2, 8192}, Shape{520, 16}}) {
      CAPTURE(threads);
      CAPTURE(shape.rows);
      CAPTURE(shape.cols);
      test::ScopedEnv row_threads("VKT_ROW_THREADS", threads);
      float eps = 1e-5f;
      size_t n = size_t(shape.rows) * shape.cols;
      auto x = test::random_floats(n, 51, -2, 2);
      auto weight = test::random_floats(shape.cols, 52, 0.5f, 1.5f);
      auto dy = test::random_floats(n, 53);
      auto dx_initial = test::random_floats(n, 54);
      auto d_weight_initial = test::random_floats(shape.cols, 55);
      Guarded x_buffer = Guarded::of(x, "x"), weight_buffer = Guarded::of(weight, "weight");
      Guarded dy_buffer = Guarded::of(dy, "dy"), y(n * 4, "y"), rstd(shape.rows * 4, "rstd");
      Guarded dx(n * 4, "dx"), dx_accumulated = Guarded::of(dx_initial, "dx accumulated");
      Guarded d_weight = Guarded::of(d_weight_initial, "d_weight");
      Guarded workspace(kernels::rmsnorm_backward_workspace_bytes(shape.rows, shape.cols), "workspace");
      const vk::BufferRange d_weight_range = d_weight.range();
      context().run([&](vk::Recorder& r) {
        kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), y.range(), rstd.range(), shape.rows, shape.cols,
                         eps);
        kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(),
                                  dx.range(), &d_weight_range, workspace.range(), shape.rows, shape.cols);
        kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(),
                                  dx_accumulated.range(), nullptr, workspace.range(), shape.rows, shape.cols, true);
      });
      std::vector<float> expected_dx(n), expected_accumulated = dx_initial, expected_d_weight = d_weight_initial;
      ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_dx.data(), expected_d_weight.data(),
                            shape.rows, shape.cols, eps);
      ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_accumulated.data(), nullptr, shape.rows,
                            shape.cols, eps, true);
      // fp32 dot products over a row (tree order) and fp32 rstd vs double: ~1e-6 relative on
      // values of order 1; d_weight sums up to 600 products.
      test::check_close(dx.floats(), expected_dx, 1e-11, 1e-5, "dx");
      test::check_close(dx_accumulated.floats(), expected_accumulated, 1e-11, 1e-5, "dx accumulated");
      test::check_close(d_weight.floats(), expected_d_weight, 1e-11, 1e-4, "d_weight (added to its initial value)");
      for (const Guarded* buffer : {&dx, &dx_accumulated, &d_weight, &workspace, &y, &rstd})
        CHECK(buffer->guard_intact());

      // In place: dx over dy gives the same bits.
      context().run([&](vk::Recorder& r) {
        kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(),
                                  dy_buffer.range(), nullptr, workspace.range(), shape.rows, shape.cols);
      });
      CHECK(same_bits(dy_buffer.floats(), dx.floats()));

      if (n > 2500) continue;  // finite differences on the small shapes only
      auto loss_x = [&](const std::vector<float>& probe) {
        std::vector<float> out(n);
        ref::rmsnorm(probe.data(), weight.data(), out.data(), nullptr, shape.rows, shape.cols, eps);
        return test::dot(out, dy);
      };
      // fp32 rounding of the reference outputs, divided by the step, limits agreement to ~1e-6.
      test::check_gradient(loss_x, x, dx.floats(), 1e-2f, 1e-6, 200, "dx vs finite differences");
      auto loss_weight = [&](const std::vector<float>& probe) {
        std::vector<float> out(n);
        ref::rmsnorm(x.data(), probe.data(), out.data(), nullptr, shape.rows, shape.cols, eps);
        return test::dot(out, dy);
      };
      std::vector<float> d_weight_only = d_weight.floats();
      for (uint32_t c = 0; c < shape.cols; c++) d_weight_only[c] -= d_weight_initial[c];
      test::check_gradient(loss_weight, weight, d_weight_only, 1e-2f, 1e-6, 200, "d_weight vs finite differences");
    }
}

// Gemma's norm: x * rstd * (1 + w), weights near 0 as Gemma checkpoints store them.
TEST_CASE("rmsnorm: weight_offset 1 (Gemma), forward and backward vs reference and finite differences") {
  struct Shape {
    uint32_t rows, cols;
  };
  for (Shape shape : {Shape{1, 7}, Shape{5, 33}, Shape{300, 130}}) {
    CAPTURE(shape.rows);
    CAPTURE(shape.cols);
    float eps = 1e-6f, offset = 1.0f;
    size_t n = size_t(shape.rows) * shape.cols;
    auto x = test::random_floats(n, 61, -2, 2), weight = test::random_floats(shape.cols, 62, -0.5f, 0.5f);
    auto dy = test::random_floats(n, 63);
    Guarded x_buffer = Guarded::of(x, "x"), weight_buffer = Guarded::of(weight, "weight");
    Guarded dy_buffer = Guarded::of(dy, "dy"), y(n * 4, "y"), rstd(shape.rows * 4, "rstd"), dx(n * 4, "dx");
    Guarded d_weight = Guarded::of(std::vector<float>(shape.cols, 0.0f), "d_weight");
    Guarded workspace(kernels::rmsnorm_backward_workspace_bytes(shape.rows, shape.cols), "workspace");
    const vk::BufferRange d_weight_range = d_weight.range();
    context().run([&](vk::Recorder& r) {
      kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), y.range(), rstd.range(), shape.rows, shape.cols, eps,
                       offset);
      kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(), dx.range(),
                                &d_weight_range, workspace.range(), shape.rows, shape.cols, false, offset);
    });
    std::vector<float> expected(n), expected_dx(n), expected_d_weight(shape.cols, 0.0f);
    ref::rmsnorm(x.data(), weight.data(), expected.data(), nullptr, shape.rows, shape.cols, eps, offset);
    ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_dx.data(), expected_d_weight.data(), shape.rows,
                          shape.cols, eps, false, offset);
    // As for offset 0: fp32 row sums vs double, |1 + w| <= 1.5.
    test::check_close(y.floats(), expected, 1e-12, 4e-6, "y");
    test::check_close(dx.floats(), expected_dx, 1e-11, 1e-5, "dx");
    test::check_close(d_weight.floats(), expected_d_weight, 1e-11, 1e-4, "d_weight");
    for (const Guarded* buffer : {&y, &rstd, &dx, &d_weight, &workspace}) CHECK(buffer->guard_intact());
    if (n > 2500) continue;
    auto loss = [&](const std::vector<float>& probe_x, const std::vector<float>& probe_w) {
      std::vector<float> out(n);
      ref::rmsnorm(probe_x.data(), probe_w.data(), out.data(), nullptr, shape.rows, shape.cols, eps, offset);
      return test::dot(out, dy);
    };
    test::check_gradient([&](const std::vector<float>& p) { return loss(p, weight); }, x, dx.floats(), 1e-2f, 1e-6, 200,
                         "dx vs finite differences");
    test::check_gradient([&](const std::vector<float>& p) { return loss(x, p); }, weight, d_weight.floats(), 1e-2f,
                         1e-6, 200, "d_weight vs finite differences");
  }
}

}  // TEST_SUITE

TEST_SUITE("kernels_ops") {

// One-workgroup-per-row kernels fold more than 65535 rows into a 2-D grid. Narrow rows keep
// this fast.
TEST_CASE("rmsnorm: more than 65535 rows (2-D grid), forward and backward") {
  uint32_t rows = 70001, cols = 3;
  size_t n = size_t(rows) * cols;
  auto x = test::random_floats(n, 191, -2, 2), weight = test::random_floats(cols, 192, 0.5f, 1.5f);
  auto dy = test::random_floats(n, 193);
  Guarded x_buffer = Guarded::of(x, "x"), weight_buffer = Guarded::of(weight, "weight"),
          dy_buffer = Guarded::of(dy, "dy");
  Guarded y(n * 4, "y"), rstd(rows * 4, "rstd"), dx(n * 4, "dx");
  Guarded d_weight = Guarded::of(std::vector<float>(cols, 0.0f), "d_weight");
  Guarded workspace(kernels::rmsnorm_backward_workspace_bytes(rows, cols), "workspace");
  const vk::BufferRange d_weight_range = d_weight.range();
  context().run([&](vk::Recorder& r) {
    kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), y.range(), rstd.range(), rows, cols, 1e-6f);
    kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(), dx.range(),
                              &d_weight_range, workspace.range(), rows, cols);
  });
  std::vector<float> expected(n), expected_dx(n), expected_d_weight(cols, 0.0f);
  ref::rmsnorm(x.data(), weight.data(), expected.data(), nullptr, rows, cols, 1e-6f);
  ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_dx.data(), expected_d_weight.data(), rows, cols,
                        1e-6f);
  // Tolerances as for the small shapes; with 3 columns a row can have a tiny norm, where
  // 1/rms amplifies fp32 rounding: max-abs is looser than for long rows.
  test::check_close(y.floats(), expected, 1e-12, 1e-5, "y");
  test::check_close(dx.floats(), expected_dx, 1e-10, 1e-3, "dx");
  // d_weight sums 70001 products of order 1 in fp32 blocks: ~1e-7 relative of sums ~300.
  test::check_close(d_weight.floats(), expected_d_weight, 1e-12, 1e-3, "d_weight");
  for (const Guarded* buffer : {&y, &rstd, &dx, &d_weight, &workspace}) CHECK(buffer->guard_intact());
}

}  // TEST_SUITE
