// The merge kernels (engine/kernels/merge.hpp) against their CPU references: merge_linear,
// merge_task_arithmetic in every mode (plain, magnitude trim, random drop, sign consensus,
// normalize, lambda, chunk offsets), merge_dot; plus the host's magnitude cut against a full sort.
// Odd sizes, guard regions after every output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/kernels/merge.hpp"
#include "engine/kernels/random.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

// Models that share a base plus small task vectors, as finetunes do (some deltas exactly zero,
// some models disagreeing in sign), stacked (count, stride).
struct Stack {
  std::vector<float> base, stack;
  uint32_t n = 0, count = 0, stride = 0;
};
Stack make_stack(uint32_t n, uint32_t count, uint32_t stride, uint32_t seed) {
  Stack s;
  s.n = n;
  s.count = count;
  s.stride = stride;
  s.base = test::random_floats(n, seed, -1, 1);
  s.stack.assign(uint64_t(count) * stride, 0.0f);
  for (uint32_t j = 0; j < count; j++) {
    auto delta = test::random_floats(n, seed + 10 + j, -0.05f, 0.05f);
    for (uint32_t i = 0; i < n; i++) {
      float d = (i % 7 == j % 7) ? 0.0f : delta[i];  // exact zeros: sign 0 never agrees
      s.stack[uint64_t(j) * stride + i] = s.base[i] + d;
    }
  }
  return s;
}

}  // namespace

TEST_SUITE("kernels_merge") {

TEST_CASE("merge_linear: weighted sums with a divisor, odd sizes and strides") {
  if (!test::op_selected("merge_linear")) return;
  struct Shape {
    uint32_t n, count, stride;
  };
  for (Shape shape : {Shape{1, 1, 1}, Shape{7, 2, 9}, Shape{257, 3, 300}, Shape{4099, 5, 4099}}) {
    CAPTURE(shape.n);
    CAPTURE(shape.count);
    auto stack = test::random_floats(uint64_t(shape.count) * shape.stride, 3, -2, 2);
    auto coefficients = test::random_floats(shape.count, 4, -1, 1);
    float divisor = std::accumulate(coefficients.begin(), coefficients.end(), 0.0f) + 3.0f;
    Guarded stack_buffer = Guarded::of(stack, "stack"), coefficient_buffer = Guarded::of(coefficients, "coefficients");
    Guarded out(uint64_t(shape.n) * 4, "out");
    context().run([&](vk::Recorder& r) {
      kernels::merge_linear(r, stack_buffer.range(), coefficient_buffer.range(), out.range(), shape.n, shape.count,
                            shape.stride, divisor);
    });
    std::vector<float> expected(shape.n);
    ref::merge_linear(stack.data(), coefficients.data(), expected.data(), shape.n, shape.count, shape.stride, divisor);
    // Same fp32 operations in the same order (products rounded, `precise`); only the final division
    // may differ: Vulkan allows 2.5 ulp for fp32 division. Values are O(1): 1e-6 absolute.
    test::check_close(out.floats(), expected, 1e-12, 1e-6, "merge_linear");
    CHECK(out.guard_intact());
  }
}

TEST_CASE("merge_task_arithmetic: every mode against the reference, masks exact") {
  if (!test::op_selected("merge_task_arithmetic")) return;
  using kernels::Sparsify;
  struct Mode {
    const char* name;
    Sparsify sparsify;
    bool consensus, normalize;
    float lambda;
  };
  const Mode modes[] = {{"task_arithmetic", Sparsify::none, false, false, 1.0f},
                        {"task_arithmetic normalized, lambda 0.7", Sparsify::none, false, true, 0.7f},
                        {"ties", Sparsify::magnitude, true, true, 1.0f},
                        {"ties without normalize", Sparsify::magnitude, true, false, 1.0f},
                        {"dare_linear", Sparsify::random, false, false, 1.0f},
                        {"dare_ties", Sparsify::random, true, false, 1.3f}};
  struct Shape {
    uint32_t n, count, stride, first;
  };
  for (Shape shape : {Shape{1, 1, 4, 0}, Shape{13, 2, 13, 4}, Shape{1001, 3, 1004, 8000}, Shape{4097, 4, 4100, 0}}) {
    Stack s = make_stack(shape.n, shape.count, shape.stride, 17 + shape.n);
    for (const Mode& mode : modes) {
      CAPTURE(mode.name);
      CAPTURE(shape.n);
      CAPTURE(shape.count);
      CAPTURE(shape.first);
      std::vector<kernels::MergeModelParams> params(shape.count);
      kernels::TaskArithmeticSettings settings;
      settings.sparsify = mode.sparsify;
      settings.consensus = mode.consensus;
      settings.normalize = mode.normalize;
      settings.lambda = mode.lambda;
      settings.seed = 1234;
      settings.tensor_key = kernels::tensor_key("model.layers.0.mlp.up_proj.weight");
      float weight_sum = 0;
      for (uint32_t j = 0; j < shape.count; j++) {
        params[j].weight = j == 1 ? -0.4f : 0.5f + 0.25f * j;  // one negative weight flips its vote
        params[j].model_key = j;
        if (mode.sparsify == Sparsify::magnitude) {
          std::vector<float> magnitudes(shape.n);
          for (uint32_t i = 0; i < shape.n; i++)
            magnitudes[i] = std::fabs(s.stack[uint64_t(j) * shape.stride + i] - s.base[i]);
          uint64_t k = std::max<uint64_t>(1, kernels::magnitude_keep_count(0.3 + 0.2 * j, shape.n));
          kernels::MagnitudeCut cut = kernels::magnitude_cut(magnitudes, k);
          params[j].threshold = cut.threshold;
          params[j].tie_cutoff = cut.tie_cutoff + shape.first;  // the chunk starts at `first` in its tensor
        }
        if (mode.sparsify == Sparsify::random) {
          params[j].density = 0.3f + 0.2f * j;
          params[j].keep_scale = 1.0f / params[j].density;
        }
        weight_sum += params[j].weight;
      }
      settings.divisor = std::fabs(weight_sum) < 1e-8f ? 1.0f : weight_sum;
      Guarded stack = Guarded::of(s.stack, "stack"), base = Guarded::of(s.base, "base");
      Guarded param_buffer = Guarded::of_raw(params, "params");
      Guarded out(uint64_t(shape.n) * 4, "out");
      context().run([&](vk::Recorder& r) {
        kernels::merge_task_arithmetic(r, stack.range(), base.range(), param_buffer.range(), out.range(), shape.n,
                                       shape.count, shape.stride, shape.first, settings);
      });
      std::vector<float> expected(shape.n);
      ref::merge_task_arithmetic(s.stack.data(), s.base.data(), params.data(), expected.data(), shape.n, shape.count,
                                 shape.stride, shape.first, settings);
      // The masks (magnitude, random, sign election) are exact decisions on identically rounded
      // values (`precise` fp32 in the same order), so any mask mismatch would show as an error of the
      // size of a task vector (~1e-2). What remains is the division (2.5 ulp allowed): 1e-6.
      test::check_close(out.floats(), expected, 1e-12, 1e-6, "merge_task_arithmetic");
      CHECK(out.guard_intact());
    }
  }
}

TEST_CASE("merge_task_arithmetic: DARE keeps about `density` of the elements and rescales them") {
  if (!test::op_selected("merge_task_arithmetic")) return;
  const uint32_t n = 20000;
  std::vector<float> base(n, 0.0f), model(n, 1.0f);  // δ = 1 everywhere
  kernels::MergeModelParams params;
  params.weight = 1;
  params.density = 0.25f;
  params.keep_scale = 4.0f;
  kernels::TaskArithmeticSettings settings;
  settings.sparsify = kernels::Sparsify::random;
  settings.seed = 42;
  settings.tensor_key = 7;
  Guarded stack = Guarded::of(model), base_buffer = Guarded::of(base),
          param_buffer = Guarded::of_raw(std::vector{params});
  Guarded out(n * 4, "out");
  context().run([&](vk::Recorder& r) {
    kernels::merge_task_arithmetic(r, stack.range(), base_buffer.range(), param_buffer.range(), out.range(), n, 1, n, 0,
                                   settings);
  });
  auto values = out.floats();
  size_t kept = std::count(values.begin(), values.end(), 4.0f),
         dropped = std::count(values.begin(), values.end(), 0.0f);
  CHECK(kept + dropped == n);  // every element is either dropped or rescaled by 1/density exactly
  // Binomial(20000, 0.25): mean 5000, sd 61; 5 sd is far beyond chance.
  CHECK(std::fabs(double(kept) - 5000.0) < 5 * 61.2);
  // The sum is preserved in expectation (DARE's point): within 5 sd of n.
  CHECK(std::fabs(std::accumulate(values.begin(), values.end(), 0.0) - n) < 5 * 4 * 61.2);
  CHECK(out.guard_intact());
}

TEST_CASE("merge_dot: partial sums of a², b², ab") {
  if (!test::op_selected("merge_dot")) return;
  for (uint32_t n : {1u, 5u, 4095u, 4096u, 4097u, 20000u}) {
    CAPTURE(n);
    auto a = test::random_floats(n, 5, -1, 1), b = test::random_floats(n, 6, -1, 1);
    Guarded a_buffer = Guarded::of(a), b_buffer = Guarded::of(b);
    const uint32_t groups = kernels::merge_dot_groups(n);
    Guarded partials(uint64_t(groups) * 12, "partials");
    context().run(
        [&](vk::Recorder& r) { kernels::merge_dot(r, a_buffer.range(), b_buffer.range(), partials.range(), n); });
    auto values = partials.floats();
    double sums[3] = {0, 0, 0}, expected[3];
    for (uint32_t g = 0; g < groups; g++)
      for (int k = 0; k < 3; k++) sums[k] += values[3 * g + k];
    ref::merge_dot(a.data(), b.data(), n, expected);
    // fp32 sums of at most 4096 terms of size <= 1 per group: relative error ~1e-6 of the sum of |terms|.
    for (int k = 0; k < 3; k++) CHECK(std::fabs(sums[k] - expected[k]) <= 1e-5 * n / 3 + 1e-6);
    CHECK(partials.guard_intact());
  }
}

TEST_CASE("magnitude_cut: keeps exactly the k largest, ties by index, as a full sort would") {
  // Magnitudes with many exact ties (bf16-like grid), compared with a stable sort by (-|x|, index).
  std::vector<float> magnitudes(997);
  for (size_t i = 0; i < magnitudes.size(); i++) magnitudes[i] = static_cast<float>((i * 37) % 50) / 8.0f;
  for (uint64_t k : {uint64_t{1}, uint64_t{2}, uint64_t{100}, uint64_t{498}, uint64_t{996}, uint64_t{997}}) {
    CAPTURE(k);
    kernels::MagnitudeCut cut = kernels::magnitude_cut(magnitudes, k);
    std::vector<size_t> order(magnitudes.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return magnitudes[a] > magnitudes[b]; });
    std::vector<bool> expected(magnitudes.size(), false);
    for (uint64_t i = 0; i < k; i++) expected[order[i]] = true;
    size_t mismatches = 0, kept = 0;
    for (size_t i = 0; i < magnitudes.size(); i++) {
      bool keep = magnitudes[i] > cut.threshold || (magnitudes[i] == cut.threshold && i < cut.tie_cutoff);
      kept += keep;
      mismatches += keep != expected[i];
    }
    CHECK(kept == k);
    CHECK(mismatches == 0);
  }
  CHECK(kernels::magnitude_keep_count(0.5, 7) == 3);  // int(3.5)
  CHECK(kernels::magnitude_keep_count(1.0, 7) == 7);
}

}  // TEST_SUITE
