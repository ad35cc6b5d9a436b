// Fused weighted cross-entropy (engine/kernels/loss.hpp): forward, dlogits in place, finite
// differences, ignored rows, chunking, NaN; more than 65535 rows. Suite kernels_ops.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "engine/kernels/loss.hpp"
#include "engine/kernels/reduce.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

struct CrossEntropyCase {
  uint32_t rows, vocab;
  std::vector<float> logits, weights;
  std::vector<uint32_t> targets;
};

CrossEntropyCase make_case(uint32_t rows, uint32_t vocab, uint32_t seed) {
  CrossEntropyCase c{rows, vocab, test::random_floats(size_t(rows) * vocab, seed, -8, 8), {}, {}};
  std::mt19937 generator(seed + 1);
  const float weight_choices[] = {1.0f, 0.5f, 2.0f, 1.0f, 0.25f};
  for (uint32_t r = 0; r < rows; r++) {
    c.targets.push_back(generator() % vocab);
    c.weights.push_back(weight_choices[r % 5]);
  }
  if (rows >= 3) {
    c.weights[1] = 0.0f;                                                              // ignored by weight
    c.targets[2] = kernels::ignore_target;                                            // ignored by target
    for (uint32_t v = 0; v < vocab; v++) c.logits[size_t(2) * vocab + v] += 1000.0f;  // and huge logits
  }
  if (rows >= 17) {
    c.targets[5] = vocab;  // out of range: ignored
    // A row with large logits that is not ignored: the running max must keep exp() finite.
    for (uint32_t v = 0; v < vocab; v++) c.logits[size_t(7) * vocab + v] += 500.0f;
  }
  return c;
}

// sum_r w_r * CE_r * grad_scale in double: the function dlogits is the gradient of.
double weighted_loss(const CrossEntropyCase& c, const std::vector<float>& logits, double grad_scale) {
  double total = 0;
  for (uint32_t r = 0; r < c.rows; r++) {
    uint32_t target = c.targets[r];
    if (c.weights[r] == 0 || target >= c.vocab) continue;
    const float* row = logits.data() + size_t(r) * c.vocab;
    double max = -INFINITY, sum = 0;
    for (uint32_t v = 0; v < c.vocab; v++) max = std::fmax(max, double(row[v]));
    for (uint32_t v = 0; v < c.vocab; v++) sum += std::exp(row[v] - max);
    total += c.weights[r] * (max + std::log(sum) - row[target]);
  }
  return total * grad_scale;
}

}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("cross_entropy: loss and in-place dlogits match the reference; ignored rows are zero") {
  struct Shape {
    uint32_t rows, vocab;
  };
  for (const std::string& threads : test::row_thread_settings())
    for (Shape shape : {Shape{1, 5}, Shape{3, 1000}, Shape{17, 5}, Shape{17, 32003}, Shape{4, 257}}) {
      CAPTURE(threads);
      CAPTURE(shape.rows);
      CAPTURE(shape.vocab);
      test::ScopedEnv row_threads("VKT_ROW_THREADS", threads);
      auto c = make_case(shape.rows, shape.vocab, 141);
      float grad_scale = 1.0f / 7.0f;  // e.g. 1 / (total weight of the batch)
      Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
      Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({grad_scale}, "grad_scale");
      Guarded loss(shape.rows * 4, "loss");
      context().run([&](vk::Recorder& r) {
        kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(),
                               shape.rows, shape.vocab);
      });
      std::vector<float> expected_loss(shape.rows), expected_dlogits(c.logits.size());
      ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), grad_scale, expected_loss.data(),
                         expected_dlogits.data(), shape.rows, shape.vocab);
      // Losses of order 10 (weights up to 2): the fp32 running sum of exp() over 32003 terms and
      // exp()/log() to a few ulp keep them within ~1e-5.
      test::check_close(loss.floats(), expected_loss, 1e-12, 2e-5, "loss");
      // dlogits = (p - onehot) * w * scale with |.| < 0.3: exp()'s few-ulp error on p.
      test::check_close(logits.floats(), expected_dlogits, 1e-11, 1e-6, "dlogits");
      CHECK(logits.guard_intact());
      CHECK(loss.guard_intact());
      if (shape.rows >= 3) {
        auto gradient = logits.floats();
        for (uint32_t row : {1u, 2u}) {
          CHECK(loss.floats()[row] == 0.0f);
          bool all_zero = true;
          for (uint32_t v = 0; v < shape.vocab; v++)
            all_zero = all_zero && gradient[size_t(row) * shape.vocab + v] == 0.0f;
          CHECK(all_zero);
        }
      }
    }
}

TEST_CASE("cross_entropy: dlogits is the gradient of the weighted loss (finite differences)") {
  for (uint32_t vocab : {5u, 33u}) {
    CAPTURE(vocab);
    auto c = make_case(3, vocab, 151);
    c.weights = {1.5f, 0.5f, 1.0f};
    c.targets[2] = 1;  // no ignored rows: every row has a gradient
    for (float& value : c.logits) value = std::fmod(value, 4.0f);
    float grad_scale = 0.25f;
    Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
    Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({grad_scale}, "grad_scale");
    Guarded loss(3 * 4, "loss");
    context().run([&](vk::Recorder& r) {
      kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(), 3,
                             vocab);
    });
    auto function = [&](const std::vector<float>& probe) { return weighted_loss(c, probe, grad_scale); };
    // Evaluated in double: only the 4-point stencil's O(h^4) and fp32 dlogits limit agreement.
    test::check_gradient(function, c.logits, logits.floats(), 1e-2f, 1e-8, 1000, "dlogits vs finite differences");
  }
}

// Gemma 2's final_logit_softcapping: the loss sees c * tanh(z / c). Logits up to |z| = 8 + 1000
// cover both the near-linear region and saturation (the row with +1000 is ignored by target;
// row 7 with +500 is not: saturated logits give p from capped values, gradient ~0).
TEST_CASE("cross_entropy: logit_softcap vs reference and finite differences") {
  for (uint32_t vocab : {5u, 33u, 1000u}) {
    CAPTURE(vocab);
    float softcap = 5.0f, grad_scale = 0.25f;
    auto c = make_case(17, vocab, 161);
    Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
    Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({grad_scale}, "grad_scale");
    Guarded loss(c.rows * 4, "loss");
    context().run([&](vk::Recorder& r) {
      kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(), c.rows,
                             vocab, kernels::ignore_target, true, softcap);
    });
    std::vector<float> expected_loss(c.rows), expected_dlogits(c.logits.size());
    ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), grad_scale, expected_loss.data(),
                       expected_dlogits.data(), c.rows, vocab, kernels::ignore_target, softcap);
    // fp32 tanh and exp to a few ulp on capped logits of |.| <= 5: as without capping.
    test::check_close(loss.floats(), expected_loss, 1e-12, 1e-5, "loss");
    test::check_close(logits.floats(), expected_dlogits, 1e-11, 1e-6, "dlogits");
    CHECK(logits.guard_intact());
    if (vocab > 33) continue;
    auto function = [&](const std::vector<float>& probe) {  // in double, as weighted_loss
      double total = 0;
      std::vector<double> row(vocab);
      for (uint32_t r = 0; r < c.rows; r++) {
        if (c.weights[r] == 0 || c.targets[r] >= vocab) continue;
        double max = -INFINITY, sum = 0;
        for (uint32_t v = 0; v < vocab; v++) row[v] = softcap * std::tanh(probe[size_t(r) * vocab + v] / softcap);
        for (double value : row) max = std::fmax(max, value);
        for (double value : row) sum += std::exp(value - max);
        total += c.weights[r] * (max + std::log(sum) - row[c.targets[r]]);
      }
      return total * grad_scale;
    };
    test::check_gradient(function, c.logits, logits.floats(), 1e-2f, 1e-8, 1000, "dlogits vs finite differences");
  }
}

TEST_CASE("cross_entropy: chunks of rows give the same bits as one call; evaluation leaves logits alone") {
  uint32_t rows = 17, vocab = 1000, split = 6;
  auto c = make_case(rows, vocab, 161);
  Guarded targets = Guarded::of_raw(c.targets, "targets"), weights = Guarded::of(c.weights, "weights");
  Guarded scale = Guarded::of({0.125f}, "grad_scale");
  Guarded whole = Guarded::of(c.logits, "whole"), chunked = Guarded::of(c.logits, "chunked");
  Guarded evaluated = Guarded::of(c.logits, "evaluated");
  Guarded loss_whole(rows * 4, "loss whole"), loss_chunked(rows * 4, "loss chunked"), loss_eval(rows * 4, "loss eval");
  auto row_slice = [&](const Guarded& buffer, uint32_t first, uint32_t count, uint32_t width) {
    vk::BufferRange range = buffer.range();
    range.offset += uint64_t(first) * width * 4;
    range.address += uint64_t(first) * width * 4;
    range.bytes = uint64_t(count) * width * 4;
    return range;
  };
  context().run([&](vk::Recorder& r) {
    kernels::cross_entropy(r, whole.range(), targets.range(), weights.range(), scale.range(), loss_whole.range(), rows,
                           vocab);
    for (uint32_t first : {0u, split}) {
      uint32_t count = first == 0 ? split : rows - split;
      kernels::cross_entropy(r, row_slice(chunked, first, count, vocab), row_slice(targets, first, count, 1),
                             row_slice(weights, first, count, 1), scale.range(),
                             row_slice(loss_chunked, first, count, 1), count, vocab);
    }
    kernels::cross_entropy(r, evaluated.range(), targets.range(), weights.range(), scale.range(), loss_eval.range(),
                           rows, vocab, kernels::ignore_target, false);
  });
  auto a = whole.floats(), b = chunked.floats(), e = evaluated.floats();
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
  CHECK(std::memcmp(e.data(), c.logits.data(), e.size() * 4) == 0);
  auto la = loss_whole.floats(), lb = loss_chunked.floats(), le = loss_eval.floats();
  CHECK(std::memcmp(la.data(), lb.data(), la.size() * 4) == 0);
  CHECK(std::memcmp(la.data(), le.data(), la.size() * 4) == 0);
  CHECK(evaluated.guard_intact());

  // The mean loss the trainer logs: deterministic sums of the per-row losses and the weights.
  Guarded totals(2 * 4, "totals");
  Guarded workspace(kernels::sum_rows_workspace_bytes(rows, 1), "workspace");
  context().run([&](vk::Recorder& r) {
    kernels::sum_rows(r, loss_whole.range(), row_slice(totals, 0, 1, 1), workspace.range(), rows, 1);
    kernels::sum_rows(r, weights.range(), row_slice(totals, 1, 1, 1), workspace.range(), rows, 1);
  });
  auto sums = totals.floats();
  double loss_sum = 0, weight_sum = 0;
  for (uint32_t r = 0; r < rows; r++) loss_sum += la[r];
  for (uint32_t r = 0; r < rows; r++) weight_sum += c.weights[r];
  CHECK(sums[0] == doctest::Approx(loss_sum).epsilon(1e-6));
  CHECK(sums[1] == doctest::Approx(weight_sum).epsilon(1e-6));
  CHECK(totals.guard_intact());
}

TEST_CASE("cross_entropy: a NaN or inf logit makes its row NaN (loss and dlogits) and leaves other rows alone") {
  uint32_t rows = 3, vocab = 33;
  auto c = make_case(rows, vocab, 171);
  c.weights = {1, 1, 1};
  c.targets = {0, 1, 2};
  c.logits[size_t(1) * vocab + 7] = NAN;
  c.logits[size_t(2) * vocab + 3] = INFINITY;
  Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
  Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({1.0f}, "grad_scale");
  Guarded loss(rows * 4, "loss");
  context().run([&](vk::Recorder& r) {
    kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(), rows,
                           vocab);
  });
  auto values = loss.floats();
  auto gradient = logits.floats();
  std::vector<float> expected_loss(rows), expected_dlogits(c.logits.size());
  ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), 1.0f, expected_loss.data(),
                     expected_dlogits.data(), rows, vocab);
  // Row 0 is untouched by its neighbours' NaN and inf.
  test::check_close({values[0]}, {expected_loss[0]}, 1e-12, 2e-5, "loss of the finite row");
  test::check_close(std::vector<float>(gradient.begin(), gradient.begin() + vocab),
                    std::vector<float>(expected_dlogits.begin(), expected_dlogits.begin() + vocab), 1e-11, 1e-6,
                    "dlogits of the finite row");
  // Rows 1 (NaN) and 2 (+inf): NaN loss and NaN dlogits, which the trainer's checks see.
  for (uint32_t row : {1u, 2u}) {
    CHECK(std::isnan(values[row]));
    CHECK(std::isnan(expected_loss[row]));
    size_t nan_count = 0;
    for (uint32_t v = 0; v < vocab; v++) nan_count += std::isnan(gradient[size_t(row) * vocab + v]);
    CHECK(nan_count == vocab);
  }
  CHECK(logits.guard_intact());
}

}  // TEST_SUITE

TEST_SUITE("kernels_ops") {

TEST_CASE("cross_entropy: more than 65535 rows (2-D grid)") {
  uint32_t rows = 70001, vocab = 5;
  auto c = make_case(rows, vocab, 211);
  Guarded logits = Guarded::of(c.logits, "logits"), targets = Guarded::of_raw(c.targets, "targets");
  Guarded weights = Guarded::of(c.weights, "weights"), scale = Guarded::of({0.5f}, "grad_scale");
  Guarded loss(size_t(rows) * 4, "loss");
  context().run([&](vk::Recorder& r) {
    kernels::cross_entropy(r, logits.range(), targets.range(), weights.range(), scale.range(), loss.range(), rows,
                           vocab);
  });
  std::vector<float> expected_loss(rows), expected_dlogits(c.logits.size());
  ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), 0.5f, expected_loss.data(),
                     expected_dlogits.data(), rows, vocab);
  test::check_close(loss.floats(), expected_loss, 1e-12, 2e-5, "loss");
  test::check_close(logits.floats(), expected_dlogits, 1e-11, 1e-6, "dlogits");
  CHECK(logits.guard_intact());
  CHECK(loss.guard_intact());
}

}  // TEST_SUITE
