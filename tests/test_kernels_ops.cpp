// The transformer's row and element-wise ops, forward and backward: embedding, rmsnorm, swiglu,
// sum_rows, scale, add. (rope: test_kernels_ops_rope.cpp; cross_entropy and conversions:
// test_kernels_ops_loss.cpp.) Every case compares with the CPU reference in engine/kernels,
// checks gradients against finite differences, and checks the guard region after each output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/base/half.hpp"
#include "engine/kernels/activation.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/embedding.hpp"
#include "engine/kernels/norm.hpp"
#include "engine/kernels/reduce.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

std::vector<uint32_t> random_ids(size_t n, uint32_t vocab, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<uint32_t> distribution(0, vocab - 1);
  std::vector<uint32_t> ids(n);
  for (uint32_t& id : ids) id = distribution(generator);
  return ids;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

}  // namespace

TEST_SUITE("kernels_ops") {

// ---------------------------------------------------------------------------------------------
// embedding

TEST_CASE("embedding: gathers rows of fp32, fp16 and bf16 tables exactly; bad ids give zeros") {
  struct Shape { uint32_t tokens, vocab, hidden; };
  for (Shape shape : {Shape{1, 5, 7}, Shape{3, 1000, 33}, Shape{17, 1000, 130}, Shape{300, 5, 8}}) {
    for (kernels::DType type : {kernels::DType::f32, kernels::DType::f16, kernels::DType::bf16}) {
      CAPTURE(shape.tokens); CAPTURE(shape.vocab); CAPTURE(shape.hidden); CAPTURE(kernels::dtype_name(type));
      auto table = test::random_floats(size_t(shape.vocab) * shape.hidden, 11, -2, 2);
      auto ids = random_ids(shape.tokens, shape.vocab, 12);
      ids[shape.tokens - 1] = shape.vocab;  // out of range: a zero row, no out-of-bounds read
      if (shape.tokens > 2) ids[1] = 0xffffffffu;
      // The stored table and the values the reference sees (rounded the same way).
      Guarded stored(0);
      if (type == kernels::DType::f32) {
        stored = Guarded::of(table, "table");
      } else {
        std::vector<uint16_t> bits(table.size());
        for (size_t i = 0; i < table.size(); i++) {
          bits[i] = type == kernels::DType::f16 ? float_to_half(table[i]) : float_to_bf16(table[i]);
          table[i] = type == kernels::DType::f16 ? half_to_float(bits[i]) : bf16_to_float(bits[i]);
        }
        stored = Guarded::of_raw(bits, "table");
      }
      Guarded id_buffer = Guarded::of_raw(ids, "ids");
      Guarded out(size_t(shape.tokens) * shape.hidden * 4, "out");
      context().run([&](vk::Recorder& r) {
        kernels::embedding(r, id_buffer.range(), stored.range(), type, out.range(), shape.tokens, shape.vocab,
                           shape.hidden);
      });
      std::vector<float> expected(size_t(shape.tokens) * shape.hidden);
      ref::embedding(ids.data(), table.data(), expected.data(), shape.tokens, shape.vocab, shape.hidden);
      // A gather copies values: exact.
      test::check_close(out.floats(), expected, 0, 0, "embedding output");
      CHECK(out.guard_intact());
    }
  }
}

TEST_CASE("embedding_backward: matches a token-ordered fp32 sum bit for bit, reference, finite differences") {
  struct Shape { uint32_t tokens, vocab, hidden; };
  // vocab 5 with 300/600 tokens: long runs of one id across the sort's 256-token chunks.
  for (Shape shape : {Shape{1, 5, 7}, Shape{3, 1000, 33}, Shape{17, 5, 130}, Shape{300, 5, 8}, Shape{600, 1000, 257},
                      Shape{40, 32003, 7}}) {
    CAPTURE(shape.tokens); CAPTURE(shape.vocab); CAPTURE(shape.hidden);
    auto ids = random_ids(shape.tokens, shape.vocab, 21);
    if (shape.tokens > 2) { ids[0] = shape.vocab + 3; ids[2] = 0xffffffffu; }  // skipped
    auto d_out = test::random_floats(size_t(shape.tokens) * shape.hidden, 22);
    auto initial = test::random_floats(size_t(shape.vocab) * shape.hidden, 23);  // accumulated onto
    Guarded id_buffer = Guarded::of_raw(ids, "ids");
    Guarded d_out_buffer = Guarded::of(d_out, "d_out");
    Guarded d_table = Guarded::of(initial, "d_table");
    Guarded workspace(kernels::embedding_backward_workspace_bytes(shape.tokens, shape.vocab), "workspace");
    auto record = [&](vk::Recorder& r) {
      kernels::embedding_backward(r, id_buffer.range(), d_out_buffer.range(), d_table.range(), workspace.range(),
                                  shape.tokens, shape.vocab, shape.hidden);
    };
    context().run(record);
    auto result = d_table.floats();
    CHECK(d_table.guard_intact());
    CHECK(workspace.guard_intact());

    // The kernel adds each id's rows in token order in fp32, then adds that sum to d_table:
    // the same fp32 operations on the CPU give the same bits (determinism and order, not luck).
    std::vector<float> ordered = initial;
    for (uint32_t v = 0; v < shape.vocab; v++) {
      std::vector<float> sum(shape.hidden, 0.0f);
      bool any = false;
      for (uint32_t t = 0; t < shape.tokens; t++)
        if (ids[t] == v) {
          any = true;
          for (uint32_t c = 0; c < shape.hidden; c++) sum[c] += d_out[size_t(t) * shape.hidden + c];
        }
      if (any)
        for (uint32_t c = 0; c < shape.hidden; c++) ordered[size_t(v) * shape.hidden + c] += sum[c];
    }
    CHECK(same_bits(result, ordered));

    // Against the double-precision reference: fp32 sums of up to ~600 values of |x| < 1 are
    // within ~600 * 2^-24 * |partial sums| < 1e-4.
    std::vector<float> expected = initial;
    ref::embedding_backward(ids.data(), d_out.data(), expected.data(), shape.tokens, shape.vocab, shape.hidden);
    test::check_close(result, expected, 1e-12, 1e-4, "d_table");

    // Replaying gives the same bits again (after restoring the accumulator).
    d_table.upload(initial.data());
    context().run(record);
    CHECK(same_bits(d_table.floats(), result));
  }
  // Finite differences of loss(table) = <embedding(table), d_out> on a small table.
  uint32_t tokens = 9, vocab = 5, hidden = 7;
  auto ids = random_ids(tokens, vocab, 31);
  auto table = test::random_floats(size_t(vocab) * hidden, 32);
  auto d_out = test::random_floats(size_t(tokens) * hidden, 33);
  Guarded id_buffer = Guarded::of_raw(ids, "ids"), d_out_buffer = Guarded::of(d_out, "d_out");
  Guarded d_table = Guarded::of(std::vector<float>(table.size(), 0.0f), "d_table");
  Guarded workspace(kernels::embedding_backward_workspace_bytes(tokens, vocab), "workspace");
  context().run([&](vk::Recorder& r) {
    kernels::embedding_backward(r, id_buffer.range(), d_out_buffer.range(), d_table.range(), workspace.range(), tokens,
                                vocab, hidden);
  });
  auto loss = [&](const std::vector<float>& probe) {
    std::vector<float> out(size_t(tokens) * hidden);
    ref::embedding(ids.data(), probe.data(), out.data(), tokens, vocab, hidden);
    return test::dot(out, d_out);
  };
  // The loss is linear in the table: finite differences are exact up to fp32 rounding of the sum.
  test::check_gradient(loss, table, d_table.floats(), 0.01f, 1e-8, 1000, "d_table vs finite differences");
}

// ---------------------------------------------------------------------------------------------
// rmsnorm

TEST_CASE("rmsnorm: matches the reference for odd and long rows, in place too") {
  struct Shape { uint32_t rows, cols; };
  for (const std::string& threads : test::row_thread_settings())
  for (Shape shape : {Shape{1, 7}, Shape{3, 33}, Shape{17, 130}, Shape{2, 257}, Shape{3, 8192}}) {
    for (float eps : {1e-5f, 1e-6f}) {
      CAPTURE(threads); CAPTURE(shape.rows); CAPTURE(shape.cols); CAPTURE(eps);
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
  struct Shape { uint32_t rows, cols; };
  // rows 600: the weight gradient's column sum spans several 256-row blocks.
  for (const std::string& threads : test::row_thread_settings())
  for (Shape shape : {Shape{1, 7}, Shape{3, 33}, Shape{17, 130}, Shape{600, 7}, Shape{2, 8192}}) {
    CAPTURE(threads); CAPTURE(shape.rows); CAPTURE(shape.cols);
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
      kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), y.range(), rstd.range(), shape.rows, shape.cols, eps);
      kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(), dx.range(),
                                &d_weight_range, workspace.range(), shape.rows, shape.cols);
      kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(),
                                dx_accumulated.range(), nullptr, workspace.range(), shape.rows, shape.cols, true);
    });
    std::vector<float> expected_dx(n), expected_accumulated = dx_initial, expected_d_weight = d_weight_initial;
    ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_dx.data(), expected_d_weight.data(), shape.rows,
                          shape.cols, eps);
    ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_accumulated.data(), nullptr, shape.rows,
                          shape.cols, eps, true);
    // fp32 dot products over a row (tree order) and fp32 rstd vs double: ~1e-6 relative on
    // values of order 1; d_weight sums up to 600 products.
    test::check_close(dx.floats(), expected_dx, 1e-11, 1e-5, "dx");
    test::check_close(dx_accumulated.floats(), expected_accumulated, 1e-11, 1e-5, "dx accumulated");
    test::check_close(d_weight.floats(), expected_d_weight, 1e-11, 1e-4, "d_weight (added to its initial value)");
    for (const Guarded* buffer : {&dx, &dx_accumulated, &d_weight, &workspace, &y, &rstd}) CHECK(buffer->guard_intact());

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

// ---------------------------------------------------------------------------------------------
// swiglu

TEST_CASE("swiglu: matches the reference, saturates without NaN at large |gate|") {
  for (uint32_t n : {1u, 7u, 33u, 17u * 130u}) {
    CAPTURE(n);
    auto gate = test::random_floats(n, 61, -6, 6);
    auto up = test::random_floats(n, 62, -2, 2);
    if (n >= 7) { gate[0] = -100; gate[1] = 100; gate[2] = -30; gate[3] = 30; gate[4] = 0; gate[5] = -88; gate[6] = 89; }
    Guarded gate_buffer = Guarded::of(gate, "gate"), up_buffer = Guarded::of(up, "up"), h(n * 4, "h");
    context().run([&](vk::Recorder& r) { kernels::swiglu(r, gate_buffer.range(), up_buffer.range(), h.range(), n); });
    std::vector<float> expected(n);
    ref::swiglu(gate.data(), up.data(), expected.data(), n);
    // exp() is specified to (3 + 2|x|) ulp: ~1e-6 relative at |gate| = 6, on |h| < 12;
    // at |gate| = 100, silu is either -0 or gate exactly.
    test::check_close(h.floats(), expected, 1e-11, 2e-5, "h");
    CHECK(h.guard_intact());
    // In place over up.
    context().run([&](vk::Recorder& r) { kernels::swiglu(r, gate_buffer.range(), up_buffer.range(), up_buffer.range(), n); });
    CHECK(same_bits(up_buffer.floats(), h.floats()));
  }
}

TEST_CASE("swiglu_backward: vs reference and finite differences, in place") {
  for (uint32_t n : {1u, 7u, 33u, 17u * 130u}) {
    CAPTURE(n);
    auto gate = test::random_floats(n, 71, -6, 6);
    auto up = test::random_floats(n, 72, -2, 2);
    auto dh = test::random_floats(n, 73);
    if (n >= 7) { gate[0] = -100; gate[1] = 100; gate[2] = -30; gate[3] = 30; gate[4] = 0; }
    Guarded gate_buffer = Guarded::of(gate, "gate"), up_buffer = Guarded::of(up, "up"), dh_buffer = Guarded::of(dh, "dh");
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

// ---------------------------------------------------------------------------------------------
// sum_rows, scale, add

TEST_CASE("sum_rows: matches the reference, accumulates, and repeats bit for bit") {
  struct Shape { uint32_t rows, cols; };
  for (Shape shape : {Shape{1, 1}, Shape{17, 1}, Shape{3000, 1}, Shape{600, 7}, Shape{3, 130}, Shape{257, 65},
                      Shape{1, 1000}}) {
    CAPTURE(shape.rows); CAPTURE(shape.cols);
    auto x = test::random_floats(size_t(shape.rows) * shape.cols, 81);
    auto initial = test::random_floats(shape.cols, 82);
    Guarded x_buffer = Guarded::of(x, "x"), out(shape.cols * 4, "out"), accumulated = Guarded::of(initial, "acc");
    Guarded workspace(kernels::sum_rows_workspace_bytes(shape.rows, shape.cols), "workspace");
    auto record = [&](vk::Recorder& r) {
      kernels::sum_rows(r, x_buffer.range(), out.range(), workspace.range(), shape.rows, shape.cols);
      kernels::sum_rows(r, x_buffer.range(), accumulated.range(), workspace.range(), shape.rows, shape.cols, true);
    };
    context().run(record);
    std::vector<float> expected(shape.cols), expected_accumulated = initial;
    ref::sum_rows(x.data(), expected.data(), shape.rows, shape.cols);
    ref::sum_rows(x.data(), expected_accumulated.data(), shape.rows, shape.cols, true);
    // fp32 partial sums of up to 3000 values in [-1, 1]: errors ~sqrt(3000) * 2^-24 * 30.
    test::check_close(out.floats(), expected, 1e-12, 2e-5, "sum");
    test::check_close(accumulated.floats(), expected_accumulated, 1e-12, 2e-5, "accumulated sum");
    for (const Guarded* buffer : {&out, &accumulated, &workspace}) CHECK(buffer->guard_intact());
    auto first = out.floats();
    context().run(record);
    CHECK(same_bits(out.floats(), first));
  }
}

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

TEST_SUITE("kernels_ops") {

// One-workgroup-per-row kernels fold more than 65535 rows into a 2-D grid; so does the
// embedding backward's one-workgroup-per-slot pass. Narrow rows keep this fast.
TEST_CASE("rmsnorm: more than 65535 rows (2-D grid), forward and backward") {
  uint32_t rows = 70001, cols = 3;
  size_t n = size_t(rows) * cols;
  auto x = test::random_floats(n, 191, -2, 2), weight = test::random_floats(cols, 192, 0.5f, 1.5f);
  auto dy = test::random_floats(n, 193);
  Guarded x_buffer = Guarded::of(x, "x"), weight_buffer = Guarded::of(weight, "weight"), dy_buffer = Guarded::of(dy, "dy");
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

TEST_CASE("embedding_backward: more than 65535 tokens: several passes, 2-D grid, deterministic") {
  uint32_t tokens = 70001, vocab = 1000, hidden = 3;
  auto ids = random_ids(tokens, vocab, 201);
  auto d_out = test::random_floats(size_t(tokens) * hidden, 202);
  Guarded id_buffer = Guarded::of_raw(ids, "ids"), d_out_buffer = Guarded::of(d_out, "d_out");
  Guarded d_table = Guarded::of(std::vector<float>(size_t(vocab) * hidden, 0.0f), "d_table");
  Guarded workspace(kernels::embedding_backward_workspace_bytes(tokens, vocab), "workspace");
  context().run([&](vk::Recorder& r) {
    kernels::embedding_backward(r, id_buffer.range(), d_out_buffer.range(), d_table.range(), workspace.range(), tokens,
                                vocab, hidden);
  });
  // fp32 sums in token order within each pass of embedding_backward_tokens_per_pass tokens,
  // added to the table pass after pass: what the kernel does.
  std::vector<float> ordered(size_t(vocab) * hidden, 0.0f);
  for (uint32_t first = 0; first < tokens; first += kernels::embedding_backward_tokens_per_pass) {
    uint32_t end = std::min(tokens, first + kernels::embedding_backward_tokens_per_pass);
    std::vector<float> sums(size_t(vocab) * hidden, 0.0f);
    std::vector<bool> seen(vocab, false);
    for (uint32_t t = first; t < end; t++) {
      seen[ids[t]] = true;
      for (uint32_t c = 0; c < hidden; c++) sums[size_t(ids[t]) * hidden + c] += d_out[size_t(t) * hidden + c];
    }
    for (uint32_t v = 0; v < vocab; v++)
      if (seen[v])
        for (uint32_t c = 0; c < hidden; c++) ordered[size_t(v) * hidden + c] += sums[size_t(v) * hidden + c];
  }
  CHECK(same_bits(d_table.floats(), ordered));
  std::vector<float> expected(size_t(vocab) * hidden, 0.0f);
  ref::embedding_backward(ids.data(), d_out.data(), expected.data(), tokens, vocab, hidden);
  test::check_close(d_table.floats(), expected, 1e-12, 1e-4, "d_table vs reference");
  CHECK(d_table.guard_intact());
  CHECK(workspace.guard_intact());
}

}  // TEST_SUITE
