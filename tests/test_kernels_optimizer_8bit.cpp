// adamw_8bit and its blockwise dynamic 8-bit quantization (engine/kernels/optimizer_8bit.hpp)
// against bitsandbytes 0.50.2: tests/data/optim8/ is written by tests/reference/optim8_reference.py
// (functional.quantize_blockwise on the CPU, and 20 steps of bnb.optim.AdamW(optim_bits=8), which
// runs on the CPU in 0.50.2), and against the CPU reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/optimizer_8bit.hpp"
#include "engine/model/safetensors.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using kernels::DynamicMap;
using test::context;

namespace {

std::vector<uint8_t> bytes_of(const model::TensorView& tensor) { return {tensor.bytes.begin(), tensor.bytes.end()}; }

// The reference script's exact gradients: small integers times a power of two.
std::vector<float> formula_values(size_t n, int64_t step, int scale_log2) {
  std::vector<float> values(n);
  for (size_t i = 0; i < n; i++) {
    int64_t index = static_cast<int64_t>(i);
    int64_t k = (index * 7919 + step * 104729 + (index * index) % 613) % 2001 - 1000;
    values[i] = static_cast<float>(k) * std::ldexp(1.0f, -10 - scale_log2);
  }
  return values;
}

// One tensor on the device: param, grad and two state buffers of adamw_8bit_state_bytes.
struct Device8 {
  size_t n;
  test::Guarded param, grad, m, v;
  explicit Device8(size_t count)
      : n(count),
        param(4 * count, "param"),
        grad(4 * count, "grad"),
        m(kernels::adamw_8bit_state_bytes(count), "exp_avg"),
        v(kernels::adamw_8bit_state_bytes(count), "exp_avg_sq") {}
  kernels::OptimizerTensor tensor() const {
    kernels::OptimizerTensor t;
    t.param = param.range();
    t.grad = grad.range();
    t.state0 = m.range();
    t.state1 = v.range();
    t.count = static_cast<uint32_t>(n);
    t.states_8bit = n >= kernels::blockwise_8bit_min_elements;
    return t;
  }
  bool guards_intact() const {
    return param.guard_intact() && grad.guard_intact() && m.guard_intact() && v.guard_intact();
  }
};

// Runs adamw_8bit step `step` over the tensors (StepState as the trainer writes it).
void run_step(std::vector<Device8*> tensors, uint32_t step, double lr, const kernels::AdamWConfig& config,
              uint32_t chunk_elements) {
  std::vector<kernels::OptimizerTensor> entries;
  for (const Device8* tensor : tensors) entries.push_back(tensor->tensor());
  kernels::TensorList list(context(), entries, chunk_elements);
  kernels::StepState state;
  kernels::set_optimizer_step(state, step, lr, config);
  vk::Buffer step_state = kernels::allocate_step_state(context(), state);
  context().run([&](vk::Recorder& r) { kernels::adamw_8bit(r, list, step_state.range(), config); });
}

// Codes that differ, and whether every difference is to a neighbouring code.
struct CodeDiff {
  size_t differing = 0;
  bool neighbours_only = true;
};
CodeDiff compare_codes(const uint8_t* actual, const uint8_t* expected, size_t n) {
  CodeDiff diff;
  for (size_t i = 0; i < n; i++) {
    if (actual[i] == expected[i]) continue;
    diff.differing++;
    diff.neighbours_only = diff.neighbours_only && std::abs(int(actual[i]) - int(expected[i])) == 1;
  }
  return diff;
}

}  // namespace

TEST_SUITE("kernels_optim") {
TEST_CASE("quantize_blockwise_8bit: bit-exact with bitsandbytes 0.50.2 quantize_blockwise") {
  model::SafetensorsFile fixture(test::source_dir() / "tests/data/optim8/quantize.safetensors");
  for (DynamicMap map : {DynamicMap::signed_map, DynamicMap::unsigned_map}) {
    std::string prefix = map == DynamicMap::signed_map ? "signed" : "unsigned";
    CAPTURE(prefix);
    std::vector<float> x = model::to_fp32(fixture.tensor(prefix + ".input"));
    std::vector<uint8_t> expected_codes = bytes_of(fixture.tensor(prefix + ".codes"));
    std::vector<float> expected_absmax = model::to_fp32(fixture.tensor(prefix + ".absmax"));
    const size_t n = x.size(), blocks = expected_absmax.size();
    REQUIRE(n % 256 != 0);  // a short last block
    REQUIRE(blocks == (n + 255) / 256);

    std::vector<uint8_t> codes(n);
    std::vector<float> absmax(blocks);
    ref::quantize_blockwise_8bit(x.data(), n, map, codes.data(), absmax.data());
    CHECK(codes == expected_codes);
    CHECK(test::same_bits(absmax, expected_absmax));

    auto device_x = test::Guarded::of(x, "x");
    test::Guarded device_codes((n + 3) / 4 * 4, "codes"), device_absmax(4 * blocks, "absmax"),
        dequantized(4 * n, "dequantized");
    context().run([&](vk::Recorder& r) {
      kernels::quantize_blockwise_8bit(r, device_x.range(), device_codes.range(), device_absmax.range(),
                                       dequantized.range(), static_cast<uint32_t>(n), map);
    });
    std::vector<uint8_t> gpu_codes = device_codes.read<uint8_t>();
    gpu_codes.resize(n);
    CHECK(gpu_codes == expected_codes);
    CHECK(test::same_bits(device_absmax.floats(), expected_absmax));
    std::vector<float> round_trip(n);
    ref::dequantize_blockwise_8bit(expected_codes.data(), expected_absmax.data(), n, map, round_trip.data());
    CHECK(test::same_bits(dequantized.floats(), round_trip));
    CHECK(device_codes.guard_intact());
    CHECK(device_absmax.guard_intact());
    CHECK(dequantized.guard_intact());
  }
}

TEST_CASE("adamw_8bit: three steps vs the CPU reference (8-bit and fp32-state tensors, chunks, tails)") {
  // Sizes: fp32 states (300 < 4096), exactly 16 blocks, and a short last block split over chunks.
  const std::vector<size_t> sizes = {300, 4096, 5000};
  kernels::AdamWConfig config;
  config.weight_decay = 0.1f;
  std::mt19937 rng(8);
  std::normal_distribution<float> normal;
  std::vector<std::unique_ptr<Device8>> device;
  std::vector<std::vector<float>> params, m_host(sizes.size()), v_host(sizes.size());
  std::vector<std::vector<uint8_t>> m(sizes.size()), v(sizes.size());
  for (size_t t = 0; t < sizes.size(); t++) {
    device.push_back(std::make_unique<Device8>(sizes[t]));
    std::vector<float> p(sizes[t]);
    for (float& value : p) value = normal(rng);
    params.push_back(p);
    device[t]->param.upload(p.data());
    m[t].assign(kernels::adamw_8bit_state_bytes(sizes[t]), 0);
    v[t].assign(kernels::adamw_8bit_state_bytes(sizes[t]), 0);
    device[t]->m.upload(m[t].data());
    device[t]->v.upload(v[t].data());
  }
  const double lr = 0.01;
  for (uint32_t step = 1; step <= 3; step++) {
    for (size_t t = 0; t < sizes.size(); t++) {
      std::vector<float> g(sizes[t]);
      for (float& value : g) value = normal(rng) * std::pow(10.0f, normal(rng));  // a wide range per block
      device[t]->grad.upload(g.data());
      ref::adamw_8bit(params[t].data(), g.data(), m[t].data(), v[t].data(), sizes[t], step, lr, config);
    }
    std::vector<Device8*> all;
    for (auto& tensor : device) all.push_back(tensor.get());
    run_step(all, step, lr, config, 1024);
  }
  for (size_t t = 0; t < sizes.size(); t++) {
    CAPTURE(sizes[t]);
    // The shader and the reference do the same correctly rounded fp32 operations in the same order:
    // the parameters agree to an ulp (sqrt and division may be off by an ulp on a GPU).
    test::check_close(device[t]->param.floats(), params[t], 1e-12, 1e-6, "param");
    std::vector<uint8_t> gpu_m = device[t]->m.read<uint8_t>(), gpu_v = device[t]->v.read<uint8_t>();
    if (sizes[t] >= kernels::blockwise_8bit_min_elements) {
      // Codes: identical where the fp32 states are; an ulp of difference can move a value across a
      // threshold to the neighbouring code, so at most 1 in 1000 may differ by one.
      CodeDiff dm = compare_codes(gpu_m.data(), m[t].data(), sizes[t]);
      CodeDiff dv = compare_codes(gpu_v.data(), v[t].data(), sizes[t]);
      CHECK(dm.neighbours_only);
      CHECK(dv.neighbours_only);
      CHECK(dm.differing * 1000 <= sizes[t]);
      CHECK(dv.differing * 1000 <= sizes[t]);
    } else {
      std::vector<float> gpu_mf(sizes[t]), ref_mf(sizes[t]);
      std::memcpy(gpu_mf.data(), gpu_m.data(), 4 * sizes[t]);
      std::memcpy(ref_mf.data(), m[t].data(), 4 * sizes[t]);
      double largest = 0;
      for (float value : ref_mf) largest = std::max(largest, double(std::fabs(value)));
      test::check_close(gpu_mf, ref_mf, 1e-12, std::ldexp(largest, -22), "exp_avg");  // 2 ulps
    }
    CHECK(device[t]->guards_intact());
  }
}

TEST_CASE("adamw_8bit: bitsandbytes AdamW(optim_bits=8) trajectory, 20 steps") {
  model::SafetensorsFile golden(test::source_dir() / "tests/data/optim8/trajectory.safetensors");
  kernels::AdamWConfig config;
  config.beta1 = std::stod(golden.metadata().at("beta1"));
  config.beta2 = std::stod(golden.metadata().at("beta2"));
  config.eps = std::stof(golden.metadata().at("eps"));
  config.weight_decay = std::stof(golden.metadata().at("weight_decay"));
  const double lr = std::stod(golden.metadata().at("lr"));
  const std::vector<std::string> names = {"big", "small"};  // 4096 elements (8-bit states), 300 (fp32)
  const std::vector<size_t> sizes = {4096, 300};
  auto state_bytes = [&](size_t t, const std::string& state, int step) {
    if (sizes[t] < kernels::blockwise_8bit_min_elements)
      return bytes_of(golden.tensor(names[t] + "." + state + "." + std::to_string(step)));
    std::vector<uint8_t> bytes = bytes_of(golden.tensor(names[t] + "." + state + "_codes." + std::to_string(step)));
    std::vector<uint8_t> absmax = bytes_of(golden.tensor(names[t] + "." + state + "_absmax." + std::to_string(step)));
    bytes.resize(kernels::blockwise_8bit_absmax_offset(sizes[t]), 0);
    bytes.insert(bytes.end(), absmax.begin(), absmax.end());
    return bytes;
  };
  auto golden_param = [&](size_t t, int step) {
    return model::to_fp32(golden.tensor(names[t] + ".param." + std::to_string(step)));
  };
  auto upload_gradients = [&](std::vector<std::unique_ptr<Device8>>& device, int step) {
    for (size_t t = 0; t < sizes.size(); t++) {
      std::vector<float> g = formula_values(sizes[t], step, static_cast<int>(t) + step % 3);
      device[t]->grad.upload(g.data());
    }
  };
  // Bound of one step from the same inputs (derivation): the shader repeats bnb's fp32 operations
  // in bnb's order, each correctly rounded, so only the constants bnb forms in double (eps *
  // sqrt(bc2) and -lr * sqrt(bc2) / bc1 of the fp32-state path) and a GPU's sqrt/division (up to
  // an ulp) differ: at most ~4 ulps of the update u, |u| <= lr * (1 - b1) / sqrt(1 - b2) < 3.2 lr,
  // plus an ulp of p. Per element: |dp| <= 2^-22 |p| + 1e-6 lr.
  // Over 20 steps without code flips the states do not depend on p (Adam's moments only see
  // gradients), so the errors add: |dp_t| <= t (2^-22 max|p| + 1e-6 lr).
  auto check_param = [&](const std::vector<float>& actual, const std::vector<float>& expected, int steps) {
    REQUIRE(actual.size() == expected.size());
    double worst = 0, largest = 0;
    for (size_t i = 0; i < actual.size(); i++) {
      worst = std::max(worst, std::fabs(double(actual[i]) - expected[i]));
      largest = std::max(largest, std::fabs(double(expected[i])));
    }
    double bound = steps * (std::ldexp(largest, -22) + 1e-6 * lr);
    CAPTURE(steps);
    CAPTURE(bound);
    CHECK(worst <= bound);
    MESSAGE("adamw_8bit vs bnb, " << steps << " step(s): max |dp| = " << worst << " (bound " << bound << ")");
  };

  SUBCASE("each step from bnb's own state") {
    for (int step : {1, 2, 20}) {
      CAPTURE(step);
      std::vector<std::unique_ptr<Device8>> device;
      for (size_t t = 0; t < sizes.size(); t++) {
        device.push_back(std::make_unique<Device8>(sizes[t]));
        std::vector<float> p = golden_param(t, step - 1);
        device[t]->param.upload(p.data());
        std::vector<uint8_t> zeros(kernels::adamw_8bit_state_bytes(sizes[t]), 0);
        std::vector<uint8_t> m = step == 1 ? zeros : state_bytes(t, "m", step - 1);
        std::vector<uint8_t> v = step == 1 ? zeros : state_bytes(t, "v", step - 1);
        device[t]->m.upload(m.data());
        device[t]->v.upload(v.data());
      }
      upload_gradients(device, step);
      run_step({device[0].get(), device[1].get()}, static_cast<uint32_t>(step), lr, config, 1024);
      for (size_t t = 0; t < sizes.size(); t++) {
        CAPTURE(names[t]);
        check_param(device[t]->param.floats(), golden_param(t, step), 1);
        if (sizes[t] >= kernels::blockwise_8bit_min_elements) {
          // The same fp32 states give the same codes; see the bound above for why a code could move.
          std::vector<uint8_t> expected_m = state_bytes(t, "m", step), expected_v = state_bytes(t, "v", step);
          std::vector<uint8_t> m = device[t]->m.read<uint8_t>(), v = device[t]->v.read<uint8_t>();
          CodeDiff dm = compare_codes(m.data(), expected_m.data(), sizes[t]);
          CodeDiff dv = compare_codes(v.data(), expected_v.data(), sizes[t]);
          CHECK(dm.neighbours_only);
          CHECK(dv.neighbours_only);
          CHECK(dm.differing * 1000 <= sizes[t]);
          CHECK(dv.differing * 1000 <= sizes[t]);
        }
        CHECK(device[t]->guards_intact());
      }
    }
  }

  SUBCASE("20 steps on our own states") {
    std::vector<std::unique_ptr<Device8>> device;
    for (size_t t = 0; t < sizes.size(); t++) {
      device.push_back(std::make_unique<Device8>(sizes[t]));
      std::vector<float> p = golden_param(t, 0);
      device[t]->param.upload(p.data());
      std::vector<uint8_t> zeros(kernels::adamw_8bit_state_bytes(sizes[t]), 0);
      device[t]->m.upload(zeros.data());
      device[t]->v.upload(zeros.data());
    }
    for (int step = 1; step <= 20; step++) {
      upload_gradients(device, step);
      run_step({device[0].get(), device[1].get()}, static_cast<uint32_t>(step), lr, config, 1024);
      if (step == 1 || step == 2 || step == 5 || step == 10 || step == 20)
        for (size_t t = 0; t < sizes.size(); t++) {
          CAPTURE(names[t]);
          check_param(device[t]->param.floats(), golden_param(t, step), step);
          if (sizes[t] >= kernels::blockwise_8bit_min_elements) {
            std::vector<uint8_t> expected_m = state_bytes(t, "m", step), m = device[t]->m.read<uint8_t>();
            std::vector<uint8_t> expected_v = state_bytes(t, "v", step), v = device[t]->v.read<uint8_t>();
            // The moments see only the gradients, so with every fp32 operation rounded as bnb's (IEEE
            // on lavapipe; exact_fma for torch's fmas) the codes stay bnb's at every step, which the
            // additive bound above relies on. (A device whose sqrt or division is an ulp off may move a
            // code; the subcase above checks each step from bnb's state.)
            CHECK(compare_codes(m.data(), expected_m.data(), sizes[t]).differing == 0);
            CHECK(compare_codes(v.data(), expected_v.data(), sizes[t]).differing == 0);
          }
        }
    }
  }
}
}
