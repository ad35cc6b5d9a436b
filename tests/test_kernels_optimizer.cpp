// Optimizer kernels (engine/kernels/optimizer.hpp: multi-tensor AdamW / SGD, global gradient norm
// and clipping, gradient zeroing and scaling). Each is checked against a CPU reference and against
// PyTorch trajectories (tests/data/optim_reference.json, written by tests/reference/optim_reference.py),
// with guard regions after every output.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/kernels/optimizer.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/ops_test_util.hpp"

using namespace vkt;
using kernels::AdamWConfig;
using kernels::SgdConfig;
using kernels::StepState;
using kernels::TensorList;
using test::context;
using test::same_bits;

namespace {

// fp32 values followed by a guard region, in any memory kind (test::Guarded is device-only;
// optimizer states are also tested in offload memory).
class GuardedTensor {
 public:
  GuardedTensor(const std::vector<float>& values, vk::MemoryKind kind = vk::MemoryKind::device,
                vk::Category category = vk::Category::workspace, const std::string& name = "tensor")
      : count_(values.size()) {
    buffer_ = context().allocate(count_ * 4 + test::guard_bytes, category, name, kind);
    std::vector<uint32_t> sentinel((count_ * 4 + test::guard_bytes) / 4, test::guard_word);
    context().upload(buffer_, sentinel.data(), 0, sentinel.size() * 4);
    write(values);
  }
  void write(const std::vector<float>& values) {
    REQUIRE(values.size() == count_);
    if (count_) context().upload(buffer_, values.data(), 0, count_ * 4);
  }
  std::vector<float> read() const {
    std::vector<float> values(count_);
    if (count_) context().download(buffer_, values.data(), 0, count_ * 4);
    return values;
  }
  bool guard_intact() const {
    std::vector<uint32_t> guard(test::guard_bytes / 4);
    context().download(buffer_, guard.data(), count_ * 4, test::guard_bytes);
    for (uint32_t word : guard)
      if (word != test::guard_word) return false;
    return true;
  }
  kernels::BufferRange range() const { return buffer_.range(0, count_ * 4); }
  size_t count() const { return count_; }

 private:
  vk::Buffer buffer_;
  size_t count_;
};

// The host copy of one parameter tensor and its optimizer state.
struct HostTensor {
  std::vector<float> param, grad, state0, state1;
  float lr_scale = 1.0f, decay_scale = 1.0f;
};

// Host tensors mirrored on the device, with a TensorList over them.
struct DeviceList {
  std::vector<std::unique_ptr<GuardedTensor>> params, grads, state0, state1;
  std::unique_ptr<TensorList> list;

  // states: how many state tensors per parameter (0, 1 = momentum, 2 = AdamW moments).
  DeviceList(const std::vector<HostTensor>& tensors, int states, uint32_t chunk_elements,
             vk::MemoryKind state_kind = vk::MemoryKind::device) {
    std::vector<kernels::OptimizerTensor> entries;
    for (const HostTensor& tensor : tensors) {
      auto device = vk::MemoryKind::device;
      params.push_back(std::make_unique<GuardedTensor>(tensor.param, device, vk::Category::adapter_params, "param"));
      grads.push_back(std::make_unique<GuardedTensor>(tensor.grad, device, vk::Category::gradients, "grad"));
      kernels::OptimizerTensor entry;
      entry.param = params.back()->range();
      entry.grad = grads.back()->range();
      entry.count = static_cast<uint32_t>(tensor.param.size());
      entry.lr_scale = tensor.lr_scale;
      entry.decay_scale = tensor.decay_scale;
      if (states >= 1) {
        state0.push_back(
            std::make_unique<GuardedTensor>(tensor.state0, state_kind, vk::Category::optimizer_state, "state0"));
        entry.state0 = state0.back()->range();
      }
      if (states >= 2) {
        state1.push_back(
            std::make_unique<GuardedTensor>(tensor.state1, state_kind, vk::Category::optimizer_state, "state1"));
        entry.state1 = state1.back()->range();
      }
      entries.push_back(entry);
    }
    list = std::make_unique<TensorList>(context(), entries, chunk_elements, "test_list");
  }

  void upload_grads(const std::vector<HostTensor>& tensors) {
    for (size_t t = 0; t < tensors.size(); t++) grads[t]->write(tensors[t].grad);
  }
  bool guards_intact() const {
    for (const auto* group : {&params, &grads, &state0, &state1})
      for (const auto& tensor : *group)
        if (!tensor->guard_intact()) return false;
    return true;
  }
};

// Random tensors of the given sizes; gradients in [-grad_range, grad_range].
std::vector<HostTensor> random_tensors(const std::vector<size_t>& sizes, uint32_t seed, float grad_range = 1.0f) {
  std::vector<HostTensor> tensors;
  for (size_t t = 0; t < sizes.size(); t++) {
    HostTensor tensor;
    tensor.param = test::random_floats(sizes[t], seed + 10 * t);
    tensor.grad = test::random_floats(sizes[t], seed + 10 * t + 1, -grad_range, grad_range);
    // Garbage in the states: step 1 must ignore it (moments and momentum start from zero / g).
    tensor.state0 = test::random_floats(sizes[t], seed + 10 * t + 2, 5.0f, 9.0f);
    tensor.state1 = test::random_floats(sizes[t], seed + 10 * t + 3, 5.0f, 9.0f);
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

void new_gradients(std::vector<HostTensor>& tensors, uint32_t seed, float range) {
  for (size_t t = 0; t < tensors.size(); t++)
    tensors[t].grad = test::random_floats(tensors[t].grad.size(), seed + 7 * t, -range, range);
}

double reference_norm(const std::vector<HostTensor>& tensors, double grad_scale) {
  std::vector<const float*> grads;
  std::vector<size_t> counts;
  for (const HostTensor& tensor : tensors) {
    grads.push_back(tensor.grad.data());
    counts.push_back(tensor.grad.size());
  }
  return ref::grad_norm(grads, counts, grad_scale);
}

std::vector<float> concatenated(const std::vector<std::unique_ptr<GuardedTensor>>& tensors) {
  std::vector<float> all;
  for (const auto& tensor : tensors) {
    auto values = tensor->read();
    all.insert(all.end(), values.begin(), values.end());
  }
  return all;
}

std::vector<float> concatenated(const std::vector<HostTensor>& tensors, std::vector<float> HostTensor::*field) {
  std::vector<float> all;
  for (const HostTensor& tensor : tensors) all.insert(all.end(), (tensor.*field).begin(), (tensor.*field).end());
  return all;
}

const std::vector<size_t> odd_sizes = {1, 7, 1000, 4099};

// ---- golden trajectories from PyTorch ----

struct Golden {
  nlohmann::json json;
  std::vector<HostTensor> initial;                     // params and lr/decay scales
  std::vector<std::vector<std::vector<float>>> grads;  // [step][tensor]
};

std::vector<float> json_floats(const nlohmann::json& values) {
  std::vector<float> result;
  for (const auto& value : values) result.push_back(static_cast<float>(value.get<double>()));
  return result;
}

Golden load_golden() {
  auto path = test::source_dir() / "tests/data/optim_reference.json";
  std::ifstream file(path);
  REQUIRE_MESSAGE(file.good(),
                  "missing " << path.string() << " (run /usr/bin/python3 tests/reference/optim_reference.py)");
  Golden golden;
  golden.json = nlohmann::json::parse(file);
  REQUIRE(golden.json.at("format") == "vktune-optim-reference");
  REQUIRE(golden.json.at("version") == 1);
  size_t tensor_count = golden.json.at("sizes").size();
  for (size_t t = 0; t < tensor_count; t++) {
    HostTensor tensor;
    tensor.param = json_floats(golden.json["initial_params"][t]);
    tensor.grad.assign(tensor.param.size(), 0.0f);
    tensor.state0.assign(tensor.param.size(), 0.0f);
    tensor.state1.assign(tensor.param.size(), 0.0f);
    tensor.lr_scale = golden.json["lr_scales"][t].get<float>();
    tensor.decay_scale = golden.json["decay_scales"][t].get<float>();
    golden.initial.push_back(std::move(tensor));
  }
  for (const auto& step : golden.json["grads"]) {
    std::vector<std::vector<float>> grads;
    for (const auto& grad : step) grads.push_back(json_floats(grad));
    golden.grads.push_back(std::move(grads));
  }
  return golden;
}

// Replays one golden case: records grad_norm + the optimizer once, then per step uploads the
// gradients, writes StepState (step, lr) and resubmits. Checks every step's norm and params.
void check_golden_case(const Golden& golden, const nlohmann::json& test_case) {
  std::string name = test_case["name"];
  INFO("golden case " << name);
  bool adam = test_case["optimizer"] == "adamw";
  std::vector<HostTensor> tensors = golden.initial;
  DeviceList device(tensors, adam ? 2 : 1, 256);
  float max_norm = test_case["max_norm"].get<float>();
  AdamWConfig adamw;
  SgdConfig sgd;
  if (adam) {
    adamw.beta1 = test_case["betas"][0].get<double>();
    adamw.beta2 = test_case["betas"][1].get<double>();
    adamw.eps = test_case["eps"].get<float>();
    adamw.weight_decay = test_case["weight_decay"].get<float>();
  } else {
    sgd.momentum = test_case["momentum"].get<float>();
    sgd.dampening = test_case["dampening"].get<float>();
    sgd.nesterov = test_case["nesterov"].get<bool>();
    sgd.weight_decay = test_case["weight_decay"].get<float>();
  }
  vk::Buffer step_state = kernels::allocate_step_state(context());
  vk::Sequence sequence(context());
  sequence.record([&](vk::Recorder& r) {
    kernels::grad_norm(r, *device.list, step_state.range(), max_norm);
    if (adam)
      kernels::adamw(r, *device.list, step_state.range(), adamw);
    else
      kernels::sgd(r, *device.list, step_state.range(), sgd);
  });
  CHECK(sequence.dispatch_count() == 3);
  size_t steps = golden.grads.size();
  for (size_t s = 0; s < steps; s++) {
    CAPTURE(s);
    for (size_t t = 0; t < tensors.size(); t++) tensors[t].grad = golden.grads[s][t];
    device.upload_grads(tensors);
    StepState state;
    double lr = golden.json["learning_rates"][s].get<double>();
    if (adam)
      kernels::set_optimizer_step(state, static_cast<uint32_t>(s + 1), lr, adamw);
    else
      kernels::set_optimizer_step(state, static_cast<uint32_t>(s + 1), lr);
    kernels::write_step_state(context(), step_state, state);
    context().submit({&sequence});
    // torch's norm is a norm of per-tensor norms in fp32; ours sums squares in fp32 partials:
    // both are within a few fp32 ulps of the exact value.
    float norm = kernels::read_step_state(context(), step_state).grad_norm;
    float expected_norm = test_case["grad_norms"][s].get<float>();
    CHECK(std::fabs(norm - expected_norm) <= 4e-7 * expected_norm);
    std::vector<float> expected;
    for (const auto& values : test_case["params"][s]) {
      auto part = json_floats(values);
      expected.insert(expected.end(), part.begin(), part.end());
    }
    // Params are O(1) (|p| < 4) and move by <= 2 * lr per step. torch rounds each fp32 op on the
    // CPU (with its own fused multiply-adds), we round each op on the GPU: the per-step
    // difference is an ulp or two of the params (measured on lavapipe: max 1.5e-8 over all cases
    // and steps; ulp(2) = 2.4e-7). 3e-7 leaves room for devices with 2.5-ulp division and sqrt.
    test::check_close(concatenated(device.params), expected, 1e-14, 3e-7,
                      name + " params after step " + std::to_string(s + 1));
  }
  CHECK(device.guards_intact());
}

// Runs `steps` AdamW steps on the device (states in `state_kind`) and returns the params and
// states after the last one, concatenated.
struct AdamWRun {
  std::vector<float> params, exp_avg, exp_avg_sq;
  float grad_norm = 0;
};
AdamWRun run_adamw(vk::MemoryKind state_kind, int steps) {
  auto tensors = random_tensors(odd_sizes, 500);
  tensors[2].lr_scale = 4.0f;
  tensors[3].decay_scale = 0.0f;
  DeviceList device(tensors, 2, 1024, state_kind);
  vk::Buffer step_state = kernels::allocate_step_state(context());
  AdamWConfig config;
  config.weight_decay = 0.1f;
  vk::Sequence sequence(context());
  sequence.record([&](vk::Recorder& r) {
    kernels::grad_norm(r, *device.list, step_state.range(), 1.0f);
    kernels::adamw(r, *device.list, step_state.range(), config);
  });
  AdamWRun run;
  for (int s = 1; s <= steps; s++) {
    new_gradients(tensors, 900 + s, 0.05f * s);
    device.upload_grads(tensors);
    StepState state;
    kernels::set_optimizer_step(state, s, 1e-3 * s, config);
    kernels::write_step_state(context(), step_state, state);
    context().submit({&sequence});
    run.grad_norm = kernels::read_step_state(context(), step_state).grad_norm;
  }
  run.params = concatenated(device.params);
  run.exp_avg = concatenated(device.state0);
  run.exp_avg_sq = concatenated(device.state1);
  CHECK(device.guards_intact());
  return run;
}

}  // namespace

TEST_SUITE("kernels_optim") {

// ---------------------------------------------------------------------------------------------
// StepState and the multi-tensor table

TEST_CASE("step_state: host helpers follow torch's bias corrections in double") {
  AdamWConfig config;
  StepState state;
  kernels::set_optimizer_step(state, 1, 1e-3, config);
  CHECK(state.step == 1);
  CHECK(state.learning_rate == 1e-3f);
  // step 1: lr / (1 - 0.9) and sqrt(1 - 0.999), with 0.9 and 0.999 as doubles (not fp32).
  CHECK(state.adam_step_size == static_cast<float>(1e-3 / (1.0 - 0.9)));
  CHECK(state.adam_bias_correction2_sqrt == static_cast<float>(std::sqrt(1.0 - 0.999)));
  kernels::set_optimizer_step(state, 1000, 2e-4, config);
  CHECK(state.adam_step_size == static_cast<float>(2e-4 / (1.0 - std::pow(0.9, 1000.0))));
  CHECK(state.adam_bias_correction2_sqrt == static_cast<float>(std::sqrt(1.0 - std::pow(0.999, 1000.0))));
  // Round trip through the device buffer.
  state.rng_seed = 77;
  state.spare[5] = 3.5f;
  vk::Buffer buffer = kernels::allocate_step_state(context(), state);
  StepState back = kernels::read_step_state(context(), buffer);
  CHECK(std::memcmp(&back, &state, sizeof state) == 0);
}

TEST_CASE("multi_tensor: table entries, chunk numbering and hazard spans") {
  std::vector<size_t> sizes = {1, 7, 0, 1000, 4099, 256};
  auto tensors = random_tensors(sizes, 1);
  DeviceList device(tensors, 2, 256);
  const TensorList& list = *device.list;
  REQUIRE(list.tensor_count() == sizes.size());
  uint32_t chunks = 0;
  uint64_t elements = 0;
  for (size_t t = 0; t < sizes.size(); t++) {
    const auto& entry = list.entries()[t];
    CHECK(entry.first_chunk == chunks);
    CHECK(entry.count == sizes[t]);
    CHECK(entry.param == device.params[t]->range().address);
    CHECK(entry.grad == device.grads[t]->range().address);
    CHECK(entry.state0 == device.state0[t]->range().address);
    CHECK(entry.state1 == device.state1[t]->range().address);
    chunks += static_cast<uint32_t>((sizes[t] + 255) / 256);
    elements += sizes[t];
  }
  CHECK(list.chunk_count() == chunks);  // 1 + 1 + 0 + 4 + 17 + 1
  CHECK(chunks == 24);
  CHECK(list.element_count() == elements);
  CHECK(list.has_state0());
  CHECK(list.has_state1());
  // The uploaded table is the host's.
  std::vector<TensorList::Entry> uploaded(list.tensor_count());
  context().download(list.table(), uploaded.data());
  CHECK(std::memcmp(uploaded.data(), list.entries().data(), uploaded.size() * sizeof(TensorList::Entry)) == 0);
  // Every tensor range lies inside one of the covering spans of its kind.
  auto covered = [](const kernels::BufferRange& range, const std::vector<kernels::BufferRange>& spans) {
    if (range.bytes == 0) return true;
    for (const auto& span : spans)
      if (span.buffer == range.buffer && span.address <= range.address &&
          range.address + range.bytes <= span.address + span.bytes &&
          span.offset + (range.address - span.address) == range.offset)
        return true;
    return false;
  };
  for (size_t t = 0; t < sizes.size(); t++) {
    CHECK(covered(device.params[t]->range(), list.param_spans()));
    CHECK(covered(device.grads[t]->range(), list.grad_spans()));
    CHECK(covered(device.state0[t]->range(), list.state_spans()));
    CHECK(covered(device.state1[t]->range(), list.state_spans()));
  }
  // Sub-allocated from a few blocks: a handful of spans, not one per tensor.
  CHECK(list.param_spans().size() <= 2);
}

// ---------------------------------------------------------------------------------------------
// Global gradient norm and clipping

TEST_CASE("grad_norm: odd sizes and chunkings match the fp64 reference, bit-identical reruns") {
  auto tensors = random_tensors(odd_sizes, 20, 3.0f);
  double grad_scale = 0.375;
  double expected = reference_norm(tensors, grad_scale);
  for (uint32_t chunk : {256u, 1024u, 4096u}) {
    CAPTURE(chunk);
    DeviceList device(tensors, 0, chunk);
    StepState initial;
    initial.grad_scale = static_cast<float>(grad_scale);
    initial.learning_rate = 0.125f;
    initial.spare[2] = 9.0f;
    auto step_state = test::Guarded::of_raw(std::vector<StepState>{initial}, "step_state");
    vk::Sequence sequence(context());
    sequence.record([&](vk::Recorder& r) { kernels::grad_norm(r, *device.list, step_state.range(), 0.0f); });
    CHECK(sequence.dispatch_count() == 2);
    context().submit({&sequence});
    StepState first = step_state.read<StepState>()[0];
    // fp32 partial sums of <= chunk/256 squares per thread, 8 tree levels, then Kahan over the
    // partials: relative error a few times 6e-8 for 5107 elements.
    CHECK(std::fabs(first.grad_norm - expected) <= 1e-6 * expected);
    CHECK(first.clip_coefficient == 1.0f);  // max_norm 0: no clipping
    // Host fields are untouched.
    CHECK(first.learning_rate == 0.125f);
    CHECK(first.spare[2] == 9.0f);
    CHECK(first.grad_scale == static_cast<float>(grad_scale));
    // Deterministic: the same bits on a rerun.
    context().submit({&sequence});
    CHECK(step_state.read<StepState>()[0].grad_norm == first.grad_norm);
    CHECK(step_state.guard_intact());
    // The norm reads the gradients and leaves them alone.
    CHECK(same_bits(concatenated(device.grads), concatenated(tensors, &HostTensor::grad)));
    CHECK(device.guards_intact());
  }
}

TEST_CASE("multi_tensor: 300 tensors, one dispatch per operation") {
  std::vector<size_t> sizes;
  std::mt19937 generator(5);
  for (int t = 0; t < 300; t++) sizes.push_back(1 + generator() % 3000);
  auto tensors = random_tensors(sizes, 40, 0.01f);
  DeviceList device(tensors, 2, 512);
  vk::Buffer step_state = kernels::allocate_step_state(context());
  AdamWConfig config;
  vk::Sequence sequence(context());
  sequence.record([&](vk::Recorder& r) {
    kernels::grad_norm(r, *device.list, step_state.range(), 0.5f);
    kernels::adamw(r, *device.list, step_state.range(), config);
  });
  CHECK(sequence.dispatch_count() == 3);  // norm partials, norm finish, adamw
  StepState state;
  kernels::set_optimizer_step(state, 1, 1e-3, config);
  kernels::write_step_state(context(), step_state, state);
  context().submit({&sequence});
  double expected = reference_norm(tensors, 1.0);
  StepState after = kernels::read_step_state(context(), step_state);
  CHECK(std::fabs(after.grad_norm - expected) <= 1e-6 * expected);
  float clip = ref::clip_coefficient(expected, 0.5f);
  CHECK(std::fabs(after.clip_coefficient - clip) <= 1e-6 * clip);
  for (HostTensor& tensor : tensors)
    ref::adamw(tensor.param.data(), tensor.grad.data(), tensor.state0.data(), tensor.state1.data(), tensor.param.size(),
               1, 1e-3, config, clip);
  // As in the odd-size AdamW test: a few fp32 ulps of O(1) params.
  test::check_close(concatenated(device.params), concatenated(tensors, &HostTensor::param), 1e-12, 1e-6, "params");
  CHECK(device.guards_intact());
}

TEST_CASE("multi_tensor: more than 65535 chunks use the 2-D grid") {
  // 65540 one-element tensors (slices of one buffer): 65540 workgroups, a (65535, 2) grid, and a
  // binary search 17 levels deep. Every element must be scaled exactly once. (scale_gradients
  // rather than grad_norm: all multi-tensor kernels share chunk_index() and find_tensor(), and
  // it is the cheapest per workgroup on lavapipe, which spends ~15-40 us on each.)
  const uint32_t count = 65540u;
  std::vector<float> grad = test::random_floats(count, 77);
  test::Guarded buffer = test::Guarded::of(grad, "many_grads");
  std::vector<kernels::OptimizerTensor> tensors(count);
  for (uint32_t t = 0; t < count; t++) {
    const auto whole = buffer.range();
    tensors[t].param = tensors[t].grad = {whole.buffer, whole.offset + 4ull * t, 4, whole.address + 4ull * t};
    tensors[t].count = 1;
  }
  TensorList list(context(), tensors, 256, "many_list");
  CHECK(list.chunk_count() == count);
  CHECK(list.grad_spans().size() == 1);  // 65540 ranges, one hazard span
  context().run([&](vk::Recorder& r) { kernels::scale_gradients(r, list, -2.0f); });
  auto scaled = buffer.floats();
  size_t wrong = 0;
  for (uint32_t i = 0; i < count; i++) wrong += scaled[i] != -2.0f * grad[i];
  CHECK(wrong == 0);
  CHECK(buffer.guard_intact());
}

TEST_CASE("grad_norm: clip coefficient on and off, as clip_grad_norm_") {
  auto tensors = random_tensors({33, 700}, 60);
  DeviceList device(tensors, 0, 256);
  double norm = reference_norm(tensors, 1.0);  // about 15.6
  REQUIRE(norm > 2.0);
  vk::Buffer step_state = kernels::allocate_step_state(context());
  for (float max_norm : {0.0f, -1.0f, 1.0f, 0.5f * static_cast<float>(norm), 2.0f * static_cast<float>(norm)}) {
    CAPTURE(max_norm);
    kernels::write_step_state(context(), step_state, StepState{});
    context().run([&](vk::Recorder& r) { kernels::grad_norm(r, *device.list, step_state.range(), max_norm); });
    StepState state = kernels::read_step_state(context(), step_state);
    float expected = ref::clip_coefficient(norm, max_norm);
    if (max_norm <= 0 || max_norm > norm)
      CHECK(state.clip_coefficient == 1.0f);
    else
      CHECK(state.clip_coefficient < 1.0f);
    // fp32 reciprocal and product against the double quotient.
    CHECK(std::fabs(state.clip_coefficient - expected) <= 1e-6 * expected);
  }
  // A NaN gradient gives a NaN norm (torch too; the trainer checks the norm when it logs).
  tensors[1].grad[5] = NAN;
  device.upload_grads(tensors);
  context().run([&](vk::Recorder& r) { kernels::grad_norm(r, *device.list, step_state.range(), 1.0f); });
  CHECK(std::isnan(kernels::read_step_state(context(), step_state).grad_norm));
}

TEST_CASE("grad_norm: one NaN or Inf gradient element (or a NaN/Inf loss) sets the non-finite flag") {
  vk::Buffer step_state = kernels::allocate_step_state(context());
  vk::Buffer loss = test::upload({2.5f}, "loss");
  const vk::BufferRange loss_range = loss.range();
  auto flags_after = [&](const std::vector<HostTensor>& tensors, float loss_value) {
    DeviceList device(tensors, 0, 256);
    context().upload(loss, &loss_value, 0, 4);
    kernels::write_step_state(context(), step_state, StepState{});
    context().run([&](vk::Recorder& r) { kernels::grad_norm(r, *device.list, step_state.range(), 1.0f, &loss_range); });
    return kernels::read_step_state(context(), step_state).flags;
  };
  auto tensors = random_tensors({33, 700, 4099}, 61);
  CHECK(flags_after(tensors, 2.5f) == 0);  // finite gradients and loss: no flag
  // Large but finite gradients whose squares stay finite: still no flag.
  std::vector<HostTensor> large = tensors;
  for (auto& tensor : large)
    for (float& g : tensor.grad) g *= 1e15f;
  CHECK(flags_after(large, 2.5f) == 0);
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    CAPTURE(bad);
    for (size_t t : {size_t{0}, size_t{2}}) {  // first tensor, and one past the first chunks of the last
      std::vector<HostTensor> poisoned = tensors;
      poisoned[t].grad[t == 0 ? 0 : 4098] = bad;
      CHECK(flags_after(poisoned, 2.5f) == kernels::step_flag_non_finite_gradient);
    }
    CHECK(flags_after(tensors, bad) == kernels::step_flag_non_finite_loss);
  }
}

TEST_CASE("grad_norm: grad_scale applies before squaring, so a loss-scaled gradient keeps a finite norm") {
  // fp16 loss scaling multiplies the loss by up to 2^127 (GradScaler's growth stops at the fp32
  // ceiling) and unscales with grad_scale = 2^-127: the scaled gradients are finite, their squares
  // are not. torch unscales before clip_grad_norm_, so its norm is finite and the step is taken.
  auto tensors = random_tensors({33, 700}, 63);
  const float loss_scale = std::ldexp(1.0f, 126);
  std::vector<HostTensor> scaled = tensors;
  for (auto& tensor : scaled)
    for (float& g : tensor.grad) g *= loss_scale;  // exact: a power of two
  DeviceList device(scaled, 0, 256);
  vk::Buffer step_state = kernels::allocate_step_state(context());
  StepState initial;
  initial.grad_scale = 1.0f / loss_scale;
  kernels::write_step_state(context(), step_state, initial);
  context().run([&](vk::Recorder& r) { kernels::grad_norm(r, *device.list, step_state.range(), 1.0f); });
  StepState state = kernels::read_step_state(context(), step_state);
  const double expected = reference_norm(tensors, 1.0);
  CHECK(reference_norm(scaled, 1.0 / loss_scale) == expected);  // the reference scales first too
  CHECK(state.flags == 0);
  CHECK(std::fabs(state.grad_norm - expected) <= 1e-6 * expected);
  const float expected_clip = ref::clip_coefficient(state.grad_norm, 1.0f);  // fp32 reciprocal and product
  CHECK(std::fabs(state.clip_coefficient - expected_clip) <= 1e-6 * expected_clip);
  // An Inf element of the scaled gradient (an fp16 overflow) still flags the step.
  scaled[1].grad[699] = INFINITY;
  device.upload_grads(scaled);
  kernels::write_step_state(context(), step_state, initial);
  context().run([&](vk::Recorder& r) { kernels::grad_norm(r, *device.list, step_state.range(), 1.0f); });
  CHECK(kernels::read_step_state(context(), step_state).flags == kernels::step_flag_non_finite_gradient);
  CHECK(device.guards_intact());
}

TEST_CASE("adamw, sgd: a step flagged non-finite leaves weights and states untouched") {
  auto tensors = random_tensors(odd_sizes, 62);
  tensors[3].grad[17] = NAN;
  for (int states : {2, 1}) {
    CAPTURE(states);
    DeviceList device(tensors, states, 1024);
    vk::Buffer step_state = kernels::allocate_step_state(context());
    context().run([&](vk::Recorder& r) {
      kernels::grad_norm(r, *device.list, step_state.range(), 1.0f);
      if (states == 2)
        kernels::adamw(r, *device.list, step_state.range(), AdamWConfig{});
      else
        kernels::sgd(r, *device.list, step_state.range(), SgdConfig{.momentum = 0.9f});
    });
    CHECK(kernels::read_step_state(context(), step_state).flags == kernels::step_flag_non_finite_gradient);
    CHECK(concatenated(device.params) == concatenated(tensors, &HostTensor::param));
    CHECK(concatenated(device.state0) == concatenated(tensors, &HostTensor::state0));
    if (states == 2) CHECK(concatenated(device.state1) == concatenated(tensors, &HostTensor::state1));
    CHECK(device.guards_intact());
  }
}

// ---------------------------------------------------------------------------------------------
// AdamW

TEST_CASE("adamw: odd sizes over replayed steps match the CPU reference") {
  auto tensors = random_tensors(odd_sizes, 100);
  tensors[0].lr_scale = 2.0f;
  tensors[1].decay_scale = 0.0f;
  tensors[3].lr_scale = 0.5f;
  tensors[3].decay_scale = 0.25f;
  DeviceList device(tensors, 2, 1024);
  vk::Buffer step_state = kernels::allocate_step_state(context());
  AdamWConfig config;
  config.weight_decay = 0.05f;
  const float max_norm = 2.0f;
  const float grad_scale = 0.5f;
  vk::Sequence sequence(context());
  sequence.record([&](vk::Recorder& r) {
    kernels::grad_norm(r, *device.list, step_state.range(), max_norm);
    kernels::adamw(r, *device.list, step_state.range(), config);
  });
  CHECK(sequence.dispatch_count() == 3);
  for (uint32_t step = 1; step <= 6; step++) {
    CAPTURE(step);
    // Gradient norms around 0.5 .. 40: some steps clip, some do not.
    new_gradients(tensors, 300 + step, step % 2 ? 0.02f : 1.0f);
    device.upload_grads(tensors);
    double lr = 1e-2 * (1.0 + 0.5 * std::sin(step));  // a schedule: the replay must pick it up
    StepState state;
    state.grad_scale = grad_scale;
    kernels::set_optimizer_step(state, step, lr, config);
    kernels::write_step_state(context(), step_state, state);
    context().submit({&sequence});

    double norm = reference_norm(tensors, grad_scale);
    float clip = ref::clip_coefficient(norm, max_norm);
    StepState after = kernels::read_step_state(context(), step_state);
    CHECK(std::fabs(after.grad_norm - norm) <= 1e-6 * norm);
    CHECK(std::fabs(after.clip_coefficient - clip) <= 1e-6 * clip);
    for (HostTensor& tensor : tensors) {
      AdamWConfig scaled = config;
      scaled.weight_decay = config.weight_decay * tensor.decay_scale;
      ref::adamw(tensor.param.data(), tensor.grad.data(), tensor.state0.data(), tensor.state1.data(),
                 tensor.param.size(), step, lr * tensor.lr_scale, scaled, grad_scale * clip);
    }
    // Params are O(1); each step changes them by <= ~lr_scale * lr. The kernel rounds every
    // fp32 operation where the reference rounds once from double: a few ulps of the params per
    // step (ulp(1) = 1.2e-7; measured on lavapipe: max-abs 1.2e-7, NMSE 2e-15 after 6 steps),
    // plus ~1e-7 relative in the clip coefficient, which Adam's m / sqrt(v) almost cancels.
    test::check_close(concatenated(device.params), concatenated(tensors, &HostTensor::param), 1e-12, 1e-6, "params");
    // Moments: fp32 recurrences, relative error a few ulps (they are not normalized).
    test::check_close(concatenated(device.state0), concatenated(tensors, &HostTensor::state0), 1e-12, 1e-7, "exp_avg");
    test::check_close(concatenated(device.state1), concatenated(tensors, &HostTensor::state1), 1e-12, 1e-8,
                      "exp_avg_sq");
  }
  CHECK(device.guards_intact());
}

TEST_CASE("adamw: states in offload memory give results identical to device memory") {
  AdamWRun on_device = run_adamw(vk::MemoryKind::device, 4);
  AdamWRun offloaded = run_adamw(vk::MemoryKind::offload, 4);
  // Same kernel, same inputs: the same bits, wherever the states live.
  CHECK(same_bits(offloaded.params, on_device.params));
  CHECK(same_bits(offloaded.exp_avg, on_device.exp_avg));
  CHECK(same_bits(offloaded.exp_avg_sq, on_device.exp_avg_sq));
  CHECK(offloaded.grad_norm == on_device.grad_norm);
}

TEST_CASE("adamw: matches torch.optim.AdamW with clip_grad_norm_ (golden)") {
  Golden golden = load_golden();
  int cases = 0;
  for (const auto& test_case : golden.json["cases"])
    if (test_case["optimizer"] == "adamw") {
      check_golden_case(golden, test_case);
      cases++;
    }
  CHECK(cases == 2);
}

// ---------------------------------------------------------------------------------------------
// SGD

TEST_CASE("sgd: plain, momentum, dampening and nesterov match the CPU reference") {
  struct Variant {
    const char* name;
    SgdConfig config;
  };
  std::vector<Variant> variants = {
      {"plain", {0.0f, 0.0f, false, 0.0f}},     {"weight decay", {0.0f, 0.0f, false, 0.1f}},
      {"momentum", {0.9f, 0.0f, false, 0.01f}}, {"dampening", {0.9f, 0.3f, false, 0.0f}},
      {"nesterov", {0.8f, 0.0f, true, 0.02f}},
  };
  for (const Variant& variant : variants) {
    INFO(variant.name);
    auto tensors = random_tensors(odd_sizes, 200);
    tensors[2].lr_scale = 3.0f;
    tensors[2].decay_scale = 0.0f;
    bool momentum = variant.config.momentum != 0.0f;
    DeviceList device(tensors, momentum ? 1 : 0, 256);
    vk::Buffer step_state = kernels::allocate_step_state(context());
    vk::Sequence sequence(context());
    sequence.record([&](vk::Recorder& r) {
      kernels::grad_norm(r, *device.list, step_state.range(), 5.0f);
      kernels::sgd(r, *device.list, step_state.range(), variant.config);
    });
    for (uint32_t step = 1; step <= 4; step++) {
      CAPTURE(step);
      new_gradients(tensors, 700 + step, 0.2f);
      device.upload_grads(tensors);
      double lr = 0.05 / step;
      StepState state;
      kernels::set_optimizer_step(state, step, lr);
      kernels::write_step_state(context(), step_state, state);
      context().submit({&sequence});
      float clip = ref::clip_coefficient(reference_norm(tensors, 1.0), 5.0f);
      for (HostTensor& tensor : tensors) {
        SgdConfig scaled = variant.config;
        scaled.weight_decay *= tensor.decay_scale;
        ref::sgd(tensor.param.data(), tensor.grad.data(), tensor.state0.data(), tensor.param.size(), step,
                 lr * tensor.lr_scale, scaled, clip);
      }
      // Updates are <= ~0.3 * lr; a couple of fp32 roundings per step on O(1) params (measured on
      // lavapipe: max-abs 3.6e-7 = 3 ulps at |p| ~ 1.04, NMSE 1e-14).
      test::check_close(concatenated(device.params), concatenated(tensors, &HostTensor::param), 1e-12, 1e-6, "params");
      if (momentum)
        test::check_close(concatenated(device.state0), concatenated(tensors, &HostTensor::state0), 1e-12, 1e-6,
                          "momentum");
    }
    CHECK(device.guards_intact());
  }
}

TEST_CASE("sgd: matches torch.optim.SGD with clip_grad_norm_ (golden)") {
  Golden golden = load_golden();
  int cases = 0;
  for (const auto& test_case : golden.json["cases"])
    if (test_case["optimizer"] == "sgd") {
      check_golden_case(golden, test_case);
      cases++;
    }
  CHECK(cases == 3);
}

// ---------------------------------------------------------------------------------------------
// Gradient zeroing and scaling

TEST_CASE("zero_gradients: clears every gradient and nothing else") {
  // Separate buffers per tensor...
  auto tensors = random_tensors(odd_sizes, 300);
  DeviceList device(tensors, 0, 256);
  context().run([&](vk::Recorder& r) { kernels::zero_gradients(r, *device.list); });
  for (const auto& grad : device.grads)
    for (float value : grad->read()) REQUIRE(value == 0.0f);
  CHECK(same_bits(concatenated(device.params), concatenated(tensors, &HostTensor::param)));
  CHECK(device.guards_intact());

  // ...and adjacent slices of one gradient arena (merged into one fill), with a tail after them.
  std::vector<float> arena = test::random_floats(1 + 7 + 1000 + 4099 + 64, 301);
  test::Guarded grads = test::Guarded::of(arena, "grad_arena");
  std::vector<kernels::OptimizerTensor> entries;
  std::vector<std::unique_ptr<GuardedTensor>> params;
  uint64_t offset = 0;
  for (size_t size : odd_sizes) {
    params.push_back(std::make_unique<GuardedTensor>(std::vector<float>(size, 1.0f)));
    kernels::OptimizerTensor entry;
    entry.param = params.back()->range();
    const auto arena_range = grads.range();
    entry.grad = {arena_range.buffer, arena_range.offset + offset * 4, size * 4, arena_range.address + offset * 4};
    entry.count = static_cast<uint32_t>(size);
    entries.push_back(entry);
    offset += size;
  }
  TensorList arena_list(context(), entries, 256, "arena_list");
  context().run([&](vk::Recorder& r) { kernels::zero_gradients(r, arena_list); });
  auto after = grads.floats();
  for (size_t i = 0; i < arena.size(); i++) {
    if (i < offset)
      REQUIRE(after[i] == 0.0f);
    else
      REQUIRE(after[i] == arena[i]);  // the tail belongs to no tensor
  }
  CHECK(grads.guard_intact());
}

TEST_CASE("scale_gradients: multiplies every gradient, one dispatch") {
  auto tensors = random_tensors(odd_sizes, 400);
  DeviceList device(tensors, 0, 256);
  vk::Sequence sequence(context());
  sequence.record([&](vk::Recorder& r) { kernels::scale_gradients(r, *device.list, 0.125f); });
  CHECK(sequence.dispatch_count() == 1);
  context().submit({&sequence});
  std::vector<float> expected = concatenated(tensors, &HostTensor::grad);
  for (float& value : expected) value *= 0.125f;  // a power of two: exact
  CHECK(same_bits(concatenated(device.grads), expected));
  CHECK(device.guards_intact());
}

}  // TEST_SUITE
