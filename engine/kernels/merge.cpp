#include "engine/kernels/merge.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/base/error.hpp"
#include "engine/kernels/random.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
constexpr uint32_t dot_elements_per_group = 256 * 16;  // shaders/merge_dot.comp THREADS * PER_THREAD
}

void merge_linear(Recorder& recorder, const BufferRange& stack, const BufferRange& coefficients, const BufferRange& out,
                  uint32_t n, uint32_t count, uint32_t stride, float divisor) {
  VKT_ASSERT(count >= 1 && stride >= n, "merge_linear: count >= 1 and stride >= n");
  require_bytes(stack, (uint64_t(count - 1) * stride + n) * 4, "merge_linear", "stack");
  require_bytes(coefficients, count * 4ull, "merge_linear", "coefficients");
  require_bytes(out, uint64_t(n) * 4, "merge_linear", "out");
  struct {
    uint64_t stack, coefficients, out;
    uint32_t n, count, stride;
    float divisor;
  } push{stack.address, coefficients.address, out.address, n, count, stride, divisor};
  record_dispatch(recorder, {.shader = "merge_linear",
                             .push = push,
                             .grid = grid_1d(n, 256),
                             .reads = {stack, coefficients},
                             .writes = {out}});
}

void merge_task_arithmetic(Recorder& recorder, const BufferRange& stack, const BufferRange& base,
                           const BufferRange& params, const BufferRange& out, uint32_t n, uint32_t count,
                           uint32_t stride, uint32_t first_index, const TaskArithmeticSettings& s) {
  VKT_ASSERT(count >= 1 && stride >= n, "merge_task_arithmetic: count >= 1 and stride >= n");
  VKT_ASSERT(first_index % 4 == 0, "merge_task_arithmetic: chunks start at multiples of 4 elements");
  require_bytes(stack, (uint64_t(count - 1) * stride + n) * 4, "merge_task_arithmetic", "stack");
  require_bytes(base, uint64_t(n) * 4, "merge_task_arithmetic", "base");
  require_bytes(params, count * sizeof(MergeModelParams), "merge_task_arithmetic", "params");
  require_bytes(out, uint64_t(n) * 4, "merge_task_arithmetic", "out");
  VKT_ASSERT(uint64_t(first_index) + n <= 0xfffffff0ull, "merge_task_arithmetic: tensor indices need 32 bits");
  uint32_t flags = static_cast<uint32_t>(s.sparsify) | (s.consensus ? 4u : 0u) | (s.normalize ? 8u : 0u);
  struct {
    uint64_t stack, base, params, out;
    uint32_t n, count, stride, first_index, flags;
    float lambda, divisor;
    uint32_t seed, tensor_key;
  } push{stack.address, base.address, params.address, out.address, n,      count,       stride,
         first_index,   flags,        s.lambda,       s.divisor,   s.seed, s.tensor_key};
  record_dispatch(recorder, {.shader = "merge_task_arithmetic",
                             .push = push,
                             .grid = grid_1d(ceil_div(n, 4), 256),
                             .reads = {stack, base, params},
                             .writes = {out}});
}

uint32_t merge_dot_groups(uint32_t n) { return ceil_div(n, dot_elements_per_group); }

void merge_dot(Recorder& recorder, const BufferRange& a, const BufferRange& b, const BufferRange& partials,
               uint32_t n) {
  require_bytes(a, uint64_t(n) * 4, "merge_dot", "a");
  require_bytes(b, uint64_t(n) * 4, "merge_dot", "b");
  require_bytes(partials, uint64_t(merge_dot_groups(n)) * 12, "merge_dot", "partials");
  struct {
    uint64_t a, b, partials;
    uint32_t n;
  } push{a.address, b.address, partials.address, n};
  record_dispatch(recorder, {.shader = "merge_dot",
                             .push = push,
                             .grid = grid_1d(n, dot_elements_per_group),
                             .reads = {a, b},
                             .writes = {partials}});
}

uint64_t magnitude_keep_count(double density, uint64_t n) {
  if (density >= 1) return n;
  return static_cast<uint64_t>(density * static_cast<double>(n));  // Python int(): truncation
}

MagnitudeCut magnitude_cut(const std::function<float(uint64_t)>& magnitude_of, uint64_t n, uint64_t k) {
  VKT_ASSERT(k >= 1 && k <= n, "magnitude_cut: 1 <= k <= n");
  VKT_ASSERT(n <= 0xfffffff0ull, "magnitude_cut: tensor indices need 32 bits");
  MagnitudeCut cut;
  {
    std::vector<float> order(n);
    for (uint64_t i = 0; i < n; i++) order[i] = magnitude_of(i);
    // The k-th largest value: nth_element is O(n) on average, a full sort is not needed.
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(),
                     std::greater<float>());
    cut.threshold = order[k - 1];
  }
  uint64_t greater = 0;
  for (uint64_t i = 0; i < n; i++) greater += magnitude_of(i) > cut.threshold ? 1 : 0;
  const uint64_t ties_to_keep = k - greater;  // >= 1: the threshold itself is among the k largest
  uint64_t seen = 0;
  for (uint64_t i = 0; i < n; i++) {
    if (magnitude_of(i) == cut.threshold && ++seen == ties_to_keep) {
      cut.tie_cutoff = static_cast<uint32_t>(i + 1);
      break;
    }
  }
  return cut;
}

MagnitudeCut magnitude_cut(const std::vector<float>& magnitudes, uint64_t k) {
  return magnitude_cut([&](uint64_t i) { return magnitudes[i]; }, magnitudes.size(), k);
}

uint32_t tensor_key(const std::string& name) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : name) {
    hash ^= c;
    hash *= 16777619u;
  }
  return hash;
}

}  // namespace vkt::kernels

namespace vkt::ref {

void merge_linear(const float* stack, const float* coefficients, float* out, uint32_t n, uint32_t count,
                  uint32_t stride, float divisor) {
  for (uint32_t i = 0; i < n; i++) {
    float sum = 0;
    for (uint32_t j = 0; j < count; j++) {
      volatile float term = coefficients[j] * stack[uint64_t(j) * stride + i];  // rounded before the add
      sum += term;
    }
    out[i] = sum / divisor;
  }
}

namespace {
float sign_of(float x) { return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f; }
}  // namespace

void merge_task_arithmetic(const float* stack, const float* base, const kernels::MergeModelParams* params, float* out,
                           uint32_t n, uint32_t count, uint32_t stride, uint32_t first_index,
                           const kernels::TaskArithmeticSettings& s) {
  using kernels::Sparsify;
  auto sparse_delta = [&](uint32_t j, uint32_t i) -> float {
    const kernels::MergeModelParams& m = params[j];
    float delta = stack[uint64_t(j) * stride + i] - base[i];
    uint32_t index = first_index + i;
    if (s.sparsify == Sparsify::magnitude) {
      float magnitude = std::fabs(delta);
      bool keep = magnitude > m.threshold || (magnitude == m.threshold && index < m.tie_cutoff);
      return keep ? delta : 0.0f;
    }
    if (s.sparsify == Sparsify::random) {
      float uniform = random::random_uniform(s.seed, random::stream_dare, m.model_key, s.tensor_key, index);
      volatile float scaled = delta * m.keep_scale;
      return uniform < m.density ? scaled : 0.0f;
    }
    return delta;
  };
  for (uint32_t i = 0; i < n; i++) {
    float mixed = 0, divisor = s.divisor;
    if (s.consensus) {
      float sign_sum = 0;
      for (uint32_t j = 0; j < count; j++) {
        volatile float weighted = params[j].weight * sparse_delta(j, i);
        sign_sum += weighted;
      }
      float majority = sign_sum >= 0 ? 1.0f : -1.0f;
      float agreeing_weight = 0;
      for (uint32_t j = 0; j < count; j++) {
        volatile float weighted = params[j].weight * sparse_delta(j, i);
        if (sign_of(weighted) == majority) {
          mixed += weighted;
          agreeing_weight += params[j].weight;
        }
      }
      divisor = agreeing_weight == 0 ? 1.0f : agreeing_weight;
    } else {
      for (uint32_t j = 0; j < count; j++) {
        volatile float weighted = params[j].weight * sparse_delta(j, i);
        mixed += weighted;
      }
    }
    if (s.normalize) mixed = mixed / divisor;
    if (s.lambda != 1.0f) mixed = mixed * s.lambda;
    out[i] = base[i] + mixed;
  }
}

void merge_dot(const float* a, const float* b, uint32_t n, double sums[3]) {
  sums[0] = sums[1] = sums[2] = 0;
  for (uint32_t i = 0; i < n; i++) {
    sums[0] += double(a[i]) * a[i];
    sums[1] += double(b[i]) * b[i];
    sums[2] += double(a[i]) * b[i];
  }
}

}  // namespace vkt::ref
