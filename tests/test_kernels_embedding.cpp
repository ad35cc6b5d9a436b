// embedding and embedding_backward (engine/kernels/embedding.hpp): gathers from fp32, fp16 and
// bf16 tables, the deterministic sorted backward against a token-ordered sum, the reference and
// finite differences; more than 65535 tokens. The trainable-token ops (scatter_rows, token_slots,
// gather_columns) copy values, so they match their references exactly; the gradients they carry are
// checked against PEFT in model_hf (tests/reference/peft_extras_golden.py). Suite kernels_ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/base/half.hpp"
#include "engine/kernels/embedding.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;
using test::same_bits;

namespace {

std::vector<uint32_t> random_ids(size_t n, uint32_t vocab, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<uint32_t> distribution(0, vocab - 1);
  std::vector<uint32_t> ids(n);
  for (uint32_t& id : ids) id = distribution(generator);
  return ids;
}

}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("embedding: gathers rows of fp32, fp16 and bf16 tables exactly; bad ids give zeros") {
  struct Shape {
    uint32_t tokens, vocab, hidden;
  };
  for (Shape shape : {Shape{1, 5, 7}, Shape{3, 1000, 33}, Shape{17, 1000, 130}, Shape{300, 5, 8}}) {
    for (kernels::DType type : {kernels::DType::f32, kernels::DType::f16, kernels::DType::bf16}) {
      CAPTURE(shape.tokens);
      CAPTURE(shape.vocab);
      CAPTURE(shape.hidden);
      CAPTURE(kernels::dtype_name(type));
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
  struct Shape {
    uint32_t tokens, vocab, hidden;
  };
  // vocab 5 with 300/600 tokens: long runs of one id across the sort's 256-token chunks.
  for (Shape shape : {Shape{1, 5, 7}, Shape{3, 1000, 33}, Shape{17, 5, 130}, Shape{300, 5, 8}, Shape{600, 1000, 257},
                      Shape{40, 32003, 7}}) {
    CAPTURE(shape.tokens);
    CAPTURE(shape.vocab);
    CAPTURE(shape.hidden);
    auto ids = random_ids(shape.tokens, shape.vocab, 21);
    if (shape.tokens > 2) {
      ids[0] = shape.vocab + 3;
      ids[2] = 0xffffffffu;
    }  // skipped
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

}  // TEST_SUITE

TEST_SUITE("kernels_ops") {

// The embedding backward's one-workgroup-per-slot pass folds more than 65535 slots into a 2-D
// grid. Narrow rows keep this fast.
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

TEST_CASE("scatter_rows: writes rows into fp32, fp16 and bf16 tables exactly; other rows and bad indices untouched") {
  const uint32_t vocab = 37, hidden = 33, count = 5;
  const std::vector<uint32_t> indices = {3, 36, 0, vocab + 4, 17};  // one out of range: skipped
  for (kernels::DType type : {kernels::DType::f32, kernels::DType::f16, kernels::DType::bf16}) {
    CAPTURE(kernels::dtype_name(type));
    auto table = test::random_floats(size_t(vocab) * hidden, 21, -2, 2);
    auto rows = test::random_floats(size_t(count) * hidden, 22, -2, 2);
    std::vector<float> expected = table;
    ref::scatter_rows(rows.data(), indices.data(), expected.data(), count, vocab, hidden);
    Guarded stored(0);
    if (type == kernels::DType::f32) {
      stored = Guarded::of(table, "table");
    } else {
      std::vector<uint16_t> bits(table.size());
      for (size_t i = 0; i < table.size(); i++)
        bits[i] = type == kernels::DType::f16 ? float_to_half(table[i]) : float_to_bf16(table[i]);
      stored = Guarded::of_raw(bits, "table");
    }
    Guarded row_buffer = Guarded::of(rows, "rows"), index_buffer = Guarded::of_raw(indices, "indices");
    context().run([&](vk::Recorder& r) {
      kernels::scatter_rows(r, row_buffer.range(), index_buffer.range(), stored.range(), type, count, vocab, hidden);
    });
    std::vector<float> actual(expected.size());
    if (type == kernels::DType::f32) {
      actual = stored.floats();
    } else {
      auto bits = stored.read<uint16_t>();
      for (size_t i = 0; i < bits.size(); i++) {
        actual[i] = type == kernels::DType::f16 ? half_to_float(bits[i]) : bf16_to_float(bits[i]);
        // The reference rounded the same way as the loader (round to nearest even).
        expected[i] = type == kernels::DType::f16 ? half_to_float(float_to_half(expected[i]))
                                                  : bf16_to_float(float_to_bf16(expected[i]));
      }
    }
    test::check_close(actual, expected, 0, 0, "scatter_rows table");
    CHECK(stored.guard_intact());
  }
}

TEST_CASE("token_slots: each token's position in the trained set, the set size for the others") {
  const std::vector<uint32_t> indices = {7, 2, 300, 5};
  for (uint32_t tokens : {1u, 33u, 1000u}) {
    CAPTURE(tokens);
    auto ids = random_ids(tokens, 400, 31);
    ids[0] = 300;
    std::vector<uint32_t> expected(tokens);
    ref::token_slots(ids.data(), indices.data(), expected.data(), tokens, uint32_t(indices.size()));
    CHECK(expected[0] == 2);
    Guarded id_buffer = Guarded::of_raw(ids, "ids"), index_buffer = Guarded::of_raw(indices, "indices");
    Guarded slots(size_t(tokens) * 4, "slots");
    context().run([&](vk::Recorder& r) {
      kernels::token_slots(r, id_buffer.range(), index_buffer.range(), slots.range(), tokens, uint32_t(indices.size()));
    });
    CHECK(slots.read<uint32_t>() == expected);
    CHECK(slots.guard_intact());
  }
}

TEST_CASE("gather_columns: picks columns exactly; out-of-range indices give zeros") {
  struct Shape {
    uint32_t rows, cols;
  };
  const std::vector<uint32_t> indices = {0, 9, 4, 1000000, 9};
  for (Shape shape : {Shape{1, 10}, Shape{7, 129}, Shape{65, 1000}}) {
    CAPTURE(shape.rows);
    CAPTURE(shape.cols);
    const auto count = uint32_t(indices.size());
    auto x = test::random_floats(size_t(shape.rows) * shape.cols, 41, -3, 3);
    std::vector<float> expected(size_t(shape.rows) * count);
    ref::gather_columns(x.data(), indices.data(), expected.data(), shape.rows, shape.cols, count);
    Guarded x_buffer = Guarded::of(x, "x"), index_buffer = Guarded::of_raw(indices, "indices");
    Guarded out(expected.size() * 4, "out");
    context().run([&](vk::Recorder& r) {
      kernels::gather_columns(r, x_buffer.range(), index_buffer.range(), out.range(), shape.rows, shape.cols, count);
    });
    test::check_close(out.floats(), expected, 0, 0, "gather_columns output");
    CHECK(out.guard_intact());
  }
}

}  // TEST_SUITE
