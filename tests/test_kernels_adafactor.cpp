// Adafactor (engine/kernels/adafactor.hpp): the shader against the CPU reference, and a 20-step
// trajectory against transformers 5.23's Adafactor as Trainer(optim="adafactor") builds it
// (tests/data/adafactor_reference.json, written by tests/reference/adafactor_reference.py).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/kernels/adafactor.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using kernels::AdafactorConfig;
using kernels::AdafactorShape;
using test::context;

namespace {

struct Tensor {
  std::vector<float> param, grad, state0, state1;
  AdafactorShape shape;
  float lr_scale = 1, decay_scale = 1;
};

// The tensors on the device with a TensorList, their Adafactor states and a StepState.
struct Device {
  std::vector<vk::Buffer> buffers;
  std::unique_ptr<kernels::TensorList> list;
  std::unique_ptr<kernels::AdafactorTable> states;
  vk::Buffer step_state;
  std::vector<size_t> param_index, grad_index;

  vk::BufferRange add(const std::vector<float>& values, vk::Category category) {
    buffers.push_back(context().allocate(std::max<size_t>(values.size(), 1) * 4, category, "adafactor_test"));
    if (!values.empty()) context().upload(buffers.back(), values.data(), 0, values.size() * 4);
    return buffers.back().range(0, values.size() * 4);
  }
  explicit Device(const std::vector<Tensor>& tensors) {
    std::vector<kernels::OptimizerTensor> entries;
    std::vector<kernels::AdafactorTensor> state_list;
    buffers.reserve(tensors.size() * 4);
    for (const Tensor& tensor : tensors) {
      kernels::OptimizerTensor entry;
      param_index.push_back(buffers.size());
      entry.param = add(tensor.param, vk::Category::adapter_params);
      grad_index.push_back(buffers.size());
      entry.grad = add(tensor.grad, vk::Category::gradients);
      kernels::AdafactorTensor states_of;
      states_of.state0 = add(tensor.state0, vk::Category::optimizer_state);
      if (!tensor.state1.empty()) states_of.state1 = add(tensor.state1, vk::Category::optimizer_state);
      states_of.shape = tensor.shape;
      state_list.push_back(states_of);
      entry.count = static_cast<uint32_t>(tensor.param.size());
      entry.lr_scale = tensor.lr_scale;
      entry.decay_scale = tensor.decay_scale;
      entries.push_back(entry);
    }
    list = std::make_unique<kernels::TensorList>(context(), entries, 256);
    states = std::make_unique<kernels::AdafactorTable>(context(), state_list);
    step_state = kernels::allocate_step_state(context());
  }
  void upload_grads(const std::vector<Tensor>& tensors) {
    for (size_t t = 0; t < tensors.size(); t++) context().upload(buffers[grad_index[t]], tensors[t].grad.data());
  }
  std::vector<float> param(size_t t, size_t count) {
    std::vector<float> values(count);
    context().download(buffers[param_index[t]], values.data(), 0, count * 4);
    return values;
  }
};

Tensor make_tensor(uint32_t rows, uint32_t cols, std::mt19937& random) {
  std::normal_distribution<float> normal;
  Tensor tensor;
  tensor.shape = {rows, cols};
  const size_t count = cols > 0 ? size_t(rows) * cols : rows;
  for (size_t i = 0; i < count; i++) tensor.param.push_back(normal(random));
  tensor.grad.assign(count, 0.0f);
  tensor.state0.assign(kernels::adafactor_state0_bytes(count, tensor.shape) / 4, 0.0f);
  tensor.state1.assign(kernels::adafactor_state1_bytes(tensor.shape) / 4, 0.0f);
  return tensor;
}

std::vector<float> json_floats(const nlohmann::json& values) {
  std::vector<float> result;
  for (const auto& value : values) result.push_back(static_cast<float>(value.get<double>()));
  return result;
}

}  // namespace

TEST_SUITE("kernels_optim") {

// Each fp32 op rounds (rel. 6e-8); the row/column means sum up to 300 terms and rms(u) up to 1000,
// so the accumulators carry ~300 x 6e-8 ~ 2e-5 relative error at worst, u's normalisation the
// same; the update is at most lr (rms-clipped to 1, times lr 0.05), so params move by <= 0.05 per
// step and their error stays below ~3 steps x 0.05 x 4e-5 = 6e-6 plus the param's own rounding
// (|p| < 5: 3e-7 per op): the test allows 2e-5 absolute.
TEST_CASE("adafactor: the shader matches the CPU reference (2-D factored, 1-D, clipping, decay)") {
  std::mt19937 random(11);
  std::vector<Tensor> tensors = {make_tensor(300, 5, random), make_tensor(1000, 0, random), make_tensor(3, 70, random),
                                 make_tensor(1, 1, random)};
  tensors[1].decay_scale = 0;
  tensors[2].lr_scale = 2;
  Device device(tensors);
  AdafactorConfig config;
  config.weight_decay = 0.1f;
  vk::Sequence sequence(context());
  sequence.record(
      [&](vk::Recorder& r) { kernels::adafactor(r, *device.list, *device.states, device.step_state.range(), config); });
  std::normal_distribution<float> normal;
  const float scales[3] = {1.0f, 1e-3f, 30.0f};  // step 2: tiny gradients against step 1's accumulators
  for (uint32_t step = 1; step <= 3; step++) {
    CAPTURE(step);
    for (Tensor& tensor : tensors)
      for (float& g : tensor.grad) g = normal(random) * scales[step - 1];
    device.upload_grads(tensors);
    kernels::StepState state;
    const double lr = 0.05;
    kernels::set_adafactor_step(state, step, lr, config);
    state.grad_scale = 0.5f;
    kernels::write_step_state(context(), device.step_state, state);
    context().submit({&sequence});
    for (size_t t = 0; t < tensors.size(); t++) {
      Tensor& tensor = tensors[t];
      AdafactorConfig scaled = config;
      scaled.weight_decay *= tensor.decay_scale;
      ref::adafactor(tensor.param.data(), tensor.grad.data(), tensor.state0.data(), tensor.state1.data(),
                     tensor.param.size(), tensor.shape, step, lr * tensor.lr_scale, scaled, 0.5f);
      const std::vector<float> got = device.param(t, tensor.param.size());
      double worst = 0;
      for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, std::abs(double(got[i]) - tensor.param[i]));
      CAPTURE(t);
      CHECK(worst <= 2e-5);
    }
  }
}

// transformers' Adafactor in fp32 on the CPU vs ours: the same formulas, different summation
// orders (torch's vectorised means and norms) and rsqrt implementations. Per step the update is
// rms-clipped to at most lr (<= 0.0167 here) with a relative error of ~1e-6 (a few roundings
// through the means and the rms): 20 steps add at most 20 x 0.0167 x 1e-6 ~ 3e-7; each parameter
// (|p| < 4, one ulp 4.8e-7) may also round differently where the decay and the update meet: the
// test allows 2e-6 absolute on every step's parameters (measured: 2.4e-7, one ulp at |p| ~ 2).
TEST_CASE("adafactor: 20 steps follow transformers' Adafactor (Trainer's optim=adafactor) within 2e-6") {
  const auto path = test::source_dir() / "tests/data/adafactor_reference.json";
  std::ifstream file(path);
  REQUIRE_MESSAGE(file.good(),
                  "missing " << path.string() << " (run /work/venv/bin/python tests/reference/adafactor_reference.py)");
  const nlohmann::json golden = nlohmann::json::parse(file);
  REQUIRE(golden.at("format") == "vktune-adafactor-reference");
  std::vector<Tensor> tensors;
  for (size_t t = 0; t < golden["shapes"].size(); t++) {
    const auto& dims = golden["shapes"][t];
    Tensor tensor;
    tensor.shape = {dims[0].get<uint32_t>(), dims.size() == 2 ? dims[1].get<uint32_t>() : 0u};
    tensor.param = json_floats(golden["initial_params"][t]);
    tensor.grad.assign(tensor.param.size(), 0.0f);
    tensor.state0.assign(kernels::adafactor_state0_bytes(tensor.param.size(), tensor.shape) / 4, 0.0f);
    tensor.state1.assign(kernels::adafactor_state1_bytes(tensor.shape) / 4, 0.0f);
    tensor.decay_scale = golden["decay_scales"][t].get<float>();
    tensors.push_back(tensor);
  }
  Device device(tensors);
  AdafactorConfig config;  // HF's defaults
  config.weight_decay = golden["weight_decay"].get<float>();
  const float max_norm = golden["max_norm"].get<float>();
  vk::Sequence sequence(context());
  sequence.record([&](vk::Recorder& r) {
    kernels::grad_norm(r, *device.list, device.step_state.range(), max_norm);
    kernels::adafactor(r, *device.list, *device.states, device.step_state.range(), config);
  });
  double worst = 0;
  for (size_t s = 0; s < golden["steps"].get<size_t>(); s++) {
    CAPTURE(s);
    for (size_t t = 0; t < tensors.size(); t++) tensors[t].grad = json_floats(golden["grads"][s][t]);
    device.upload_grads(tensors);
    kernels::StepState state;
    kernels::set_adafactor_step(state, static_cast<uint32_t>(s + 1), golden["learning_rates"][s].get<double>(), config);
    kernels::write_step_state(context(), device.step_state, state);
    context().submit({&sequence});
    CHECK(kernels::read_step_state(context(), device.step_state).grad_norm ==
          doctest::Approx(golden["grad_norms"][s].get<double>()).epsilon(1e-6));
    for (size_t t = 0; t < tensors.size(); t++) {
      const std::vector<float> expected = json_floats(golden["params"][s][t]);
      const std::vector<float> got = device.param(t, expected.size());
      for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, std::abs(double(got[i]) - expected[i]));
    }
  }
  MESSAGE("adafactor vs transformers, 20 steps: max |param diff| " << worst);
  CHECK(worst <= 2e-6);
}

TEST_CASE("adafactor: a tensor too large for one workgroup is a UserError naming it, before any step") {
  CHECK_NOTHROW(kernels::check_adafactor_fits("model.layers.0.mlp.down_proj.weight", 64 * 128, {64, 128}));
  // Llama-3's embedding table (128256 x 4096): full finetuning with adafactor must say so clearly.
  const std::string error = test::user_error_of([] {
    kernels::check_adafactor_fits("model.embed_tokens.weight", 128256u * 4096u, {128256, 4096});
  });
  CHECK(error.find("model.embed_tokens.weight (128256 x 4096) is too large") != std::string::npos);
}

}  // TEST_SUITE
