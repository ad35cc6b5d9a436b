// --pure-bf16's optimizer (engine/kernels/optimizer_bf16.hpp): stochastic rounding to bf16 is
// unbiased and reproducible for a seed (CPU reference), and adamw_bf16_sr matches it on the device.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/base/half.hpp"
#include "engine/kernels/optimizer_bf16.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using test::context;

namespace {

// bf16's spacing at |x| (8 significant bits: 2^(exponent - 7)).
double bf16_ulp(float x) {
  int exponent = 0;
  std::frexp(x, &exponent);  // x = f * 2^exponent, f in [0.5, 1)
  return std::ldexp(1.0, exponent - 8);
}

struct Bf16Tensor {
  vk::Buffer param, grad, exp_avg, exp_avg_sq;
  uint32_t count;
  Bf16Tensor(const std::vector<uint16_t>& values, const std::vector<float>& gradient) : count(uint32_t(values.size())) {
    param = context().allocate((count * 2 + 3) / 4 * 4, vk::Category::workspace, "param");
    grad = context().allocate(count * 4, vk::Category::workspace, "grad");
    exp_avg = context().allocate(count * 4, vk::Category::workspace, "exp_avg");
    exp_avg_sq = context().allocate(count * 4, vk::Category::workspace, "exp_avg_sq");
    context().upload(param, values.data(), 0, count * 2);
    context().upload(grad, gradient.data(), 0, count * 4);
  }
  kernels::OptimizerTensor tensor() const {
    kernels::OptimizerTensor t;
    t.param = param.range(0, count * 2);
    t.grad = grad.range();
    t.state0 = exp_avg.range();
    t.state1 = exp_avg_sq.range();
    t.count = count;
    t.param_bf16 = true;
    return t;
  }
  std::vector<uint16_t> read() const {
    std::vector<uint16_t> values(count);
    context().download(param, values.data(), 0, count * 2);
    return values;
  }
};

}  // namespace

TEST_SUITE("kernels_optim") {
TEST_CASE("stochastic_round_bf16: unbiased and reproducible for a seed (CPU reference)") {
  // N roundings of x with independent 16-bit random words: each is lo or lo + ulp, up with
  // probability p = (dropped 16 bits) / 2^16 exactly, so the mean's error has standard deviation
  // ulp * sqrt(p (1 - p) / N) <= ulp / (2 sqrt N). Bound: 5 standard deviations (a fixed seed
  // makes the test deterministic; 5 sigma would fail by chance once in ~3.5 million seeds).
  // Round-to-nearest's bias is up to ulp / 2, 35x this bound at N = 20000.
  const uint32_t n = 20000;
  const double bound_ulps = 5.0 / (2.0 * std::sqrt(double(n)));
  for (float x : {1.0f + 0.3f / 128, -3.14159f, 1e-3f, 0.75f + 1.0f / 4096, 12345.678f}) {
    CAPTURE(x);
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
      sum += bf16_to_float(ref::stochastic_round_bf16(x, ref::rounding_bits(7, 1, 0, i)));
    const double error_ulps = std::fabs(sum / n - double(x)) / bf16_ulp(x);
    CAPTURE(error_ulps);
    CHECK(error_ulps <= bound_ulps);
    // Each rounding is one of x's two bf16 neighbours.
    const float once = bf16_to_float(ref::stochastic_round_bf16(x, ref::rounding_bits(7, 1, 0, 0)));
    CHECK(std::fabs(double(once) - double(x)) < bf16_ulp(x));
  }
  // Reproducible: the same (seed, step, tensor, element) gives the same bits; another seed or
  // step another stream.
  CHECK(ref::rounding_bits(7, 3, 2, 11) == ref::rounding_bits(7, 3, 2, 11));
  CHECK(ref::rounding_bits(7, 3, 2, 11) != ref::rounding_bits(8, 3, 2, 11));
  CHECK(ref::rounding_bits(7, 3, 2, 11) != ref::rounding_bits(7, 4, 2, 11));
  // A representable value is never moved.
  CHECK(ref::stochastic_round_bf16(1.5f, 0xFFFF) == float_to_bf16(1.5f));
}

TEST_CASE("adamw_bf16_sr: matches the CPU reference, keeps updates below half an ulp, same bits for a seed") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  kernels::AdamWConfig config;
  config.weight_decay = 0.01f;
  // Sizes not multiples of the chunk (1024) or the workgroup (256); the last tensor is 4096 ones
  // with gradient 1: AdamW's first step is lr * m / sqrt(v) = lr, and lr = 2^-10 is a quarter of
  // bf16's spacing below 1 (2^-8): round-to-nearest would leave every weight at 1.
  const std::vector<uint32_t> sizes = {7, 1000, 4096};
  std::vector<std::vector<uint16_t>> initial;
  std::vector<std::vector<float>> gradients;
  for (uint32_t size : sizes) {
    const bool ones = size == 4096;
    std::vector<uint16_t> p(size);
    std::vector<float> g(size);
    for (uint32_t i = 0; i < size; i++) {
      p[i] = float_to_bf16(ones ? 1.0f : normal(rng));
      g[i] = ones ? 1.0f : normal(rng) * 0.1f;
    }
    initial.push_back(p);
    gradients.push_back(g);
  }
  auto run = [&](uint32_t seed) {
    std::vector<Bf16Tensor> tensors;
    std::vector<kernels::OptimizerTensor> list_tensors;
    for (size_t t = 0; t < sizes.size(); t++) tensors.emplace_back(initial[t], gradients[t]);
    for (const Bf16Tensor& tensor : tensors) list_tensors.push_back(tensor.tensor());
    kernels::TensorList list(context(), list_tensors, 1024);
    kernels::StepState state;
    state.rng_seed = seed;
    kernels::set_optimizer_step(state, 1, 1.0 / 1024, config);
    vk::Buffer step_state = kernels::allocate_step_state(context(), state);
    context().run([&](vk::Recorder& r) { kernels::adamw_bf16_sr(r, list, step_state.range(), config); });
    std::vector<std::vector<uint16_t>> out;
    for (const Bf16Tensor& tensor : tensors) out.push_back(tensor.read());
    return out;
  };
  const auto device = run(42);
  CHECK(run(42) == device);  // deterministic for a seed
  CHECK(run(43) != device);
  for (size_t t = 0; t < sizes.size(); t++) {
    CAPTURE(t);
    std::vector<uint16_t> expected = initial[t];
    std::vector<float> m(sizes[t]), v(sizes[t]);
    kernels::AdamWConfig decayed = config;
    ref::adamw_bf16_sr(expected.data(), gradients[t].data(), m.data(), v.data(), sizes[t], 1, 1.0 / 1024, decayed, 42,
                       uint32_t(t));
    // The kernel computes the update in fp32 where the reference rounds once from double: its
    // fp32 value may differ by an ulp of fp32 (2^-16 of bf16's), which moves the stochastic
    // threshold by one of 2^16 random values: a bf16 ulp apart in about 1 element in 65536.
    size_t differing = 0;
    for (uint32_t i = 0; i < sizes[t]; i++) {
      const double gap = std::fabs(double(bf16_to_float(device[t][i])) - double(bf16_to_float(expected[i])));
      CHECK(gap <= bf16_ulp(bf16_to_float(expected[i])));
      differing += gap != 0;
    }
    CHECK(differing <= 1);
  }
  // The ones: 1 - lr * (1 + wd) exactly in expectation (decay first, then lr * m / sqrt(v) with
  // m / sqrt(v) = 1 up to eps); the mean of 4096 stochastic roundings within 5 standard
  // deviations (ulp / (2 sqrt 4096) each) of it, where round-to-nearest would give exactly 1.
  double sum = 0;
  for (uint16_t bits : device[2]) sum += bf16_to_float(bits);
  const double exact = 1.0 * (1.0 - (1.0 / 1024) * 0.01) - 1.0 / 1024;
  CHECK(std::fabs(sum / 4096 - exact) <= 5.0 * std::ldexp(1.0, -8) / (2.0 * 64));
}
}
