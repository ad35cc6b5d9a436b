// Knowledge distillation's fused loss (engine/kernels/distill.hpp): forward vs the fp64 reference,
// dlogits vs finite differences, ignored rows, NaN rows, alpha 0 equal to cross_entropy. Suite kernels_ops.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "engine/kernels/distill.hpp"
#include "engine/kernels/loss.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

struct DistillCase {
  uint32_t rows, vocab;
  std::vector<float> logits, teacher, weights;
  std::vector<uint32_t> targets;
};

DistillCase make_case(uint32_t rows, uint32_t vocab, uint32_t seed) {
  DistillCase c{rows,
                vocab,
                test::random_floats(size_t(rows) * vocab, seed, -6, 6),
                test::random_floats(size_t(rows) * vocab, seed + 7, -6, 6),
                {},
                {}};
  std::mt19937 generator(seed + 1);
  const float weight_choices[] = {1.0f, 0.5f, 2.0f, 1.0f, 0.25f};
  for (uint32_t r = 0; r < rows; r++) {
    c.targets.push_back(generator() % vocab);
    c.weights.push_back(weight_choices[r % 5]);
  }
  if (rows >= 4) {
    c.weights[1] = 0.0f;                    // ignored by weight (a prompt token at prompt weight 0)
    c.targets[2] = kernels::ignore_target;  // ignored by target
    c.targets[3] = vocab;                   // out of range: ignored
  }
  if (rows >= 6)  // large logits that are not ignored: the running maxima keep exp() finite
    for (uint32_t v = 0; v < vocab; v++) {
      c.logits[size_t(5) * vocab + v] += 300.0f;
      c.teacher[size_t(5) * vocab + v] -= 200.0f;
    }
  return c;
}

struct Run {
  std::vector<float> loss, dlogits, teacher_after, kl_part, ce_part;  // the parts: with_parts only
};

Run run_kernel(const DistillCase& c, float grad_scale, float temperature, float alpha, bool gradient = true,
               bool with_parts = false) {
  Guarded logits = Guarded::of(c.logits, "logits"), teacher = Guarded::of(c.teacher, "teacher_logits");
  Guarded targets = Guarded::of_raw(c.targets, "targets"), weights = Guarded::of(c.weights, "weights");
  Guarded scale = Guarded::of({grad_scale}, "grad_scale"), loss(c.rows * 4, "loss");
  Guarded kl(c.rows * 4, "kl_part"), ce(c.rows * 4, "ce_part");
  const kernels::DistillParts parts{kl.range(), ce.range()};
  context().run([&](vk::Recorder& r) {
    kernels::distill_loss(r, logits.range(), teacher.range(), targets.range(), weights.range(), scale.range(),
                          loss.range(), c.rows, c.vocab, temperature, alpha, kernels::ignore_target, gradient,
                          with_parts ? &parts : nullptr);
  });
  CHECK(logits.guard_intact());
  CHECK(teacher.guard_intact());
  CHECK(loss.guard_intact());
  CHECK(kl.guard_intact());
  CHECK(ce.guard_intact());
  Run run{loss.floats(), logits.floats(), teacher.floats(), {}, {}};
  if (with_parts) {
    run.kl_part = kl.floats();
    run.ce_part = ce.floats();
  }
  return run;
}

// Σ_r loss_r * grad_scale in double (the reference's per-row losses are rounded to fp32, too coarse for
// finite differences): the function dlogits is the gradient of.
double total_loss(const DistillCase& c, const std::vector<float>& logits, float grad_scale, float temperature,
                  float alpha) {
  double total = 0;
  auto log_sum_exp = [&](const float* row, double scale) {
    double max = -INFINITY, sum = 0;
    for (uint32_t v = 0; v < c.vocab; v++) max = std::fmax(max, row[v] * scale);
    for (uint32_t v = 0; v < c.vocab; v++) sum += std::exp(row[v] * scale - max);
    return max + std::log(sum);
  };
  for (uint32_t r = 0; r < c.rows; r++) {
    if (c.weights[r] == 0 || c.targets[r] >= c.vocab) continue;
    const float* s = logits.data() + size_t(r) * c.vocab;
    const float* u = c.teacher.data() + size_t(r) * c.vocab;
    const double lse_q = log_sum_exp(s, 1.0 / temperature), lse_p = log_sum_exp(u, 1.0 / temperature);
    double kl = 0;
    for (uint32_t v = 0; v < c.vocab; v++) {
      const double log_p = u[v] / double(temperature) - lse_p, log_q = s[v] / double(temperature) - lse_q;
      kl += std::exp(log_p) * (log_p - log_q);
    }
    const double ce = log_sum_exp(s, 1.0) - s[c.targets[r]];
    total += c.weights[r] * (alpha * double(temperature) * temperature * kl + (1.0 - alpha) * ce);
  }
  return total * grad_scale;
}

}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("distill_loss: loss and in-place dlogits match the fp64 reference; ignored rows are zero") {
  struct Shape {
    uint32_t rows, vocab;
  };
  for (const std::string& threads : test::row_thread_settings())
    for (Shape shape : {Shape{1, 5}, Shape{7, 33}, Shape{6, 1000}, Shape{4, 32003}})
      for (float temperature : {1.0f, 2.0f, 0.5f}) {
        CAPTURE(threads);
        CAPTURE(shape.rows);
        CAPTURE(shape.vocab);
        CAPTURE(temperature);
        test::ScopedEnv row_threads("VKT_ROW_THREADS", threads);
        DistillCase c = make_case(shape.rows, shape.vocab, 211);
        const float grad_scale = 1.0f / 7.0f, alpha = 0.7f;
        const bool with_parts = temperature != 0.5f;  // the loss alone, and with its KL and CE parts
        Run run = run_kernel(c, grad_scale, temperature, alpha, true, with_parts);
        std::vector<float> expected_loss(c.rows), expected_dlogits(c.logits.size()), expected_kl(c.rows),
            expected_ce(c.rows);
        ref::distill_loss(c.logits.data(), c.teacher.data(), c.targets.data(), c.weights.data(), grad_scale,
                          expected_loss.data(), expected_dlogits.data(), c.rows, c.vocab, temperature, alpha,
                          kernels::ignore_target, expected_kl.data(), expected_ce.data());
        if (with_parts) {  // the same bounds as the loss they make up; ignored rows 0
          test::check_close(run.kl_part, expected_kl, 5e-10, 2e-4, "kl part");
          test::check_close(run.ce_part, expected_ce, 5e-10, 2e-4, "ce part");
          for (uint32_t row = 0; row < c.rows; row++) {
            const double sum = alpha * double(run.kl_part[row]) + (1 - alpha) * double(run.ce_part[row]);
            CHECK(std::fabs(sum - run.loss[row]) <= 1e-5 * std::fmax(1.0, std::fabs(run.loss[row])));
          }
          if (c.rows >= 4)
            for (uint32_t row : {1u, 2u, 3u}) CHECK((run.kl_part[row] == 0.0f && run.ce_part[row] == 0.0f));
        }
        // Losses of order 1-50 (T^2 = 4 scales the KL): the kernel's KL is E_p[(u - s)/T] minus a difference
        // of fp32 log-sum-exps of size ~|logits|/T (up to 600 on row 5), so a few ulp of those, ~1e-4
        // absolute on that row (the NMSE bound allows it), ~1e-5 elsewhere; CE as cross_entropy (2e-5).
        test::check_close(run.loss, expected_loss, 5e-10, 2e-4, "loss");
        // dlogits: sums of three softmaxes times w * scale <= 0.3: exp()'s few-ulp error.
        test::check_close(run.dlogits, expected_dlogits, 1e-10, 2e-6, "dlogits");
        CHECK(run.teacher_after == c.teacher);  // the teacher's logits are only read
        if (c.rows >= 4)
          for (uint32_t row : {1u, 2u, 3u}) {
            CHECK(run.loss[row] == 0.0f);
            bool all_zero = true;
            for (uint32_t v = 0; v < c.vocab; v++) all_zero = all_zero && run.dlogits[size_t(row) * c.vocab + v] == 0;
            CHECK(all_zero);
          }
      }
}

TEST_CASE("distill_loss: dlogits is the gradient of the weighted loss (finite differences)") {
  for (float temperature : {1.0f, 2.5f})
    for (float alpha : {0.0f, 0.5f, 1.0f}) {
      CAPTURE(temperature);
      CAPTURE(alpha);
      DistillCase c = make_case(3, 33, 221);
      c.weights = {1.5f, 0.5f, 1.0f};
      for (float& value : c.logits) value = std::fmod(value, 3.0f);
      const float grad_scale = 0.25f;
      Run run = run_kernel(c, grad_scale, temperature, alpha);
      auto function = [&](const std::vector<float>& probe) {
        return total_loss(c, probe, grad_scale, temperature, alpha);
      };
      test::check_gradient(function, c.logits, run.dlogits, 1e-2f, 1e-8, 1000, "dlogits vs finite differences");
    }
}

TEST_CASE("distill_loss: alpha 0 is cross_entropy; teacher = student at alpha 1 gives zero loss and gradient") {
  DistillCase c = make_case(6, 257, 231);
  const float grad_scale = 0.5f;
  Run ce_only = run_kernel(c, grad_scale, 2.0f, 0.0f);
  std::vector<float> loss(c.rows), dlogits(c.logits.size());
  ref::cross_entropy(c.logits.data(), c.targets.data(), c.weights.data(), grad_scale, loss.data(), dlogits.data(),
                     c.rows, c.vocab);
  test::check_close(ce_only.loss, loss, 1e-12, 2e-5, "loss vs cross_entropy");
  test::check_close(ce_only.dlogits, dlogits, 1e-11, 1e-6, "dlogits vs cross_entropy");
  c.teacher = c.logits;
  Run same = run_kernel(c, grad_scale, 2.0f, 1.0f);
  for (float value : same.loss) CHECK(std::fabs(value) <= 1e-3f);  // KL 0 up to the fp32 log-sum-exps (row 5: ~300)
  for (float value : same.dlogits) CHECK(std::fabs(value) <= 1e-6f);
  Run eval = run_kernel(c, grad_scale, 2.0f, 1.0f, false);
  CHECK(eval.dlogits == c.logits);  // loss only: the logits stay
}

TEST_CASE("distill_loss: a NaN or inf logit (student or teacher) makes its row NaN and leaves other rows alone") {
  DistillCase c = make_case(3, 40, 241);
  c.weights = {1.0f, 1.0f, 1.0f};
  c.logits[size_t(1) * 40 + 3] = NAN;
  c.teacher[size_t(2) * 40 + 9] = INFINITY;
  Run run = run_kernel(c, 1.0f, 2.0f, 0.5f);
  CHECK(std::isfinite(run.loss[0]));
  for (uint32_t row : {1u, 2u}) {
    CHECK(std::isnan(run.loss[row]));
    size_t nan_count = 0;
    for (uint32_t v = 0; v < 40; v++) nan_count += std::isnan(run.dlogits[size_t(row) * 40 + v]);
    CHECK(nan_count == 40);
  }
}
}
