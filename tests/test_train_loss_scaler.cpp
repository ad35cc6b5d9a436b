// fp16 dynamic loss scaling (engine/train/loss_scaler.hpp) against torch.amp.GradScaler trajectories
// (tests/data/grad_scaler.json, written by tests/reference/grad_scaler_golden.py with torch 2.15):
// the scale, the skipped steps and the growth tracker step by step; and the device path of a scaled
// step (gradients fp32(scale * c) unscaled by StepState.grad_scale in the norm pass, which flags an
// overflow, then clipping and AdamW, skipped on the device) against the parameters torch computed,
// with HF Trainer's scheduler and AdamW step counts that skipped steps do not advance.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/kernels/optimizer.hpp"
#include "engine/model/session.hpp"
#include "engine/train/loss_scaler.hpp"
#include "engine/train/monitor.hpp"
#include "engine/train/step_runner.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/ops_test_util.hpp"
#include "tests/support.hpp"

using namespace vkt;
using train::LossScaler;
using train::LossScalerSettings;

namespace {

nlohmann::json load_reference() {
  auto path = test::source_dir() / "tests/data/grad_scaler.json";
  std::ifstream file(path);
  REQUIRE_MESSAGE(file.good(), "missing " << path.string() << " (run tests/reference/grad_scaler_golden.py)");
  nlohmann::json json = nlohmann::json::parse(file);
  REQUIRE(json.at("format") == "vktune-grad-scaler-reference");
  REQUIRE(json.at("version") == 1);
  return json;
}

// JSON numbers, or "inf" / "-inf" / "nan" (JSON has no such numbers).
float json_float(const nlohmann::json& value) {
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    if (text == "nan") return NAN;
    return text == "-inf" ? -INFINITY : INFINITY;
  }
  return static_cast<float>(value.get<double>());
}

LossScalerSettings settings_of(const nlohmann::json& test_case) {
  LossScalerSettings settings;
  settings.init_scale = json_float(test_case.at("init_scale"));
  settings.growth_factor = json_float(test_case.at("growth_factor"));
  settings.backoff_factor = json_float(test_case.at("backoff_factor"));
  settings.growth_interval = test_case.at("growth_interval").get<int64_t>();
  return settings;
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// A LoRA training run through StepRunner (the peft_extras llama fixture, AdamW, clipping at 1)
// with an optional loss scaler updated from each step's flags as the trainer does.
struct ScaledRun {
  std::vector<double> losses, norms;
  std::vector<std::vector<float>> adapter_after;  // [step] every adapter parameter, concatenated
  std::vector<bool> skipped;
};
ScaledRun run_lora_steps(train::LossScaler* scaler, int steps, float weight_factor = 1.0f) {
  const auto folder = test::source_dir() / "tests/data/peft_extras";
  test::GoldenBatch batch = test::golden_batch(test::GoldenFile(folder / "mts_untied.golden.bin"));
  for (float& weight : batch.weights) weight *= weight_factor;  // a power of two: the same normalised loss
  batch.weight_sum *= weight_factor;
  auto [lora, session] =
      test::open_adapter_session(test::source_dir() / "tests/data/hf/llama3", folder / "mts_untied/adapter", batch);
  train::OptimizerSettings optimizer;
  optimizer.weight_decay = 0.01;
  optimizer.max_grad_norm = 1.0;
  train::StepRunner runner(test::context(), *session, optimizer);
  runner.reset();
  runner.set_loss_scaler(scaler);
  ScaledRun run;
  for (int64_t step = 1; step <= steps; step++) {
    const double lr = 1e-3 / double(scaler ? scaler->schedule_step(step) : step);
    const uint32_t flags = runner.step(step, lr, {batch});
    const uint32_t fatal = scaler ? scaler->absorb(flags) : flags;
    REQUIRE(fatal == 0);
    run.skipped.push_back(flags != 0);
    run.losses.push_back(runner.take_loss_sum());
    run.norms.push_back(runner.device_state().grad_norm);
    std::vector<float> adapter;
    for (const auto& spec : session->plan.buffers)
      if (spec.category == vk::Category::adapter_params) {
        const std::vector<float> values = test::download(session->buffers->buffer(spec.name));
        adapter.insert(adapter.end(), values.begin(), values.end());
      }
    run.adapter_after.push_back(std::move(adapter));
  }
  return run;
}

}  // namespace

TEST_SUITE("train") {

TEST_CASE("loss scaler: torch's defaults over 4500 steps, overflows at 3, 4, 2500 and 4499 (golden)") {
  const nlohmann::json golden = load_reference()["cases"]["defaults"];
  const LossScalerSettings defaults;  // must be torch's defaults: the golden ran with them
  CHECK(settings_of(golden).init_scale == defaults.init_scale);
  CHECK(settings_of(golden).growth_factor == defaults.growth_factor);
  CHECK(settings_of(golden).backoff_factor == defaults.backoff_factor);
  CHECK(settings_of(golden).growth_interval == defaults.growth_interval);
  LossScaler scaler(true);
  std::vector<int64_t> skipped;
  std::vector<std::pair<int64_t, float>> changes;
  const int64_t steps = golden["steps"].get<int64_t>();
  for (int64_t step = 1; step <= steps; step++) {
    const float before = scaler.scale();
    if (scaler.update(golden["overflow_steps"].contains(std::to_string(step)))) skipped.push_back(step);
    if (scaler.scale() != before) changes.emplace_back(step, scaler.scale());
  }
  CHECK(skipped == golden["skipped_steps"].get<std::vector<int64_t>>());
  REQUIRE(changes.size() == golden["scale_changes"].size());
  for (size_t i = 0; i < changes.size(); i++) {
    CAPTURE(i);
    CHECK(changes[i].first == golden["scale_changes"][i][0].get<int64_t>());
    CHECK(changes[i].second == json_float(golden["scale_changes"][i][1]));
  }
  CHECK(scaler.scale() == json_float(golden["final_scale"]));
  CHECK(scaler.growth_tracker() == golden["final_growth_tracker"].get<int64_t>());
  CHECK(scaler.skipped_steps() == 4);
  CHECK(scaler.schedule_step(steps) == steps - 4);
}

TEST_CASE("loss scaler: disabled (fp32, bf16) it scales by 1 and never skips") {
  LossScaler off(false);
  CHECK(off.scale() == 1.0f);
  CHECK(off.inverse_scale() == 1.0f);
  CHECK_FALSE(off.update(true));
  CHECK(off.scale() == 1.0f);
  CHECK(off.skipped_steps() == 0);
  CHECK(off.optimizer_step(7) == 7);
}

TEST_CASE("loss scaler: metrics.jsonl carries loss_scale and skipped_steps for fp16 runs only") {
  train::StepMetrics fp32;
  fp32.step = 3;
  fp32.loss = 1.5;
  const nlohmann::json plain = nlohmann::json::parse(train::step_to_json_line(fp32));
  CHECK_FALSE(plain.contains("loss_scale"));  // fp32 runs' lines are as before
  CHECK_FALSE(plain.contains("skipped_steps"));
  train::StepMetrics fp16 = fp32;
  fp16.loss_scale = 32768;
  fp16.skipped_steps = 2;
  const std::string line = train::step_to_json_line(fp16);
  CHECK(nlohmann::json::parse(line).at("loss_scale") == 32768.0);
  CHECK(nlohmann::json::parse(line).at("skipped_steps") == 2);
  train::RunMonitor monitor;  // what `vktune dashboard RUN_DIR` reads back
  REQUIRE(train::apply_metrics_line(monitor, line));
  REQUIRE(monitor.snapshot().steps.size() == 1);
  CHECK(monitor.snapshot().steps.back().loss_scale == 32768.0);
  CHECK(monitor.snapshot().steps.back().skipped_steps == 2);
}

// Replays a golden case on the device: each step's gradient fp32(scale * c_t) is unscaled by the
// norm pass (StepState.grad_scale = 1/scale), whose flag decides the skip; clipping and AdamW
// follow (skipped on the device when flagged).
void replay_on_device(const nlohmann::json& golden) {
  const bool adam = golden.contains("adamw");
  const nlohmann::json& records = golden["records"];
  std::vector<float> param;
  for (const auto& value : golden["initial_param"]) param.push_back(json_float(value));
  const size_t n = param.size();
  vk::Buffer param_buffer = test::upload(param, "param");
  vk::Buffer grad_buffer = test::upload(std::vector<float>(n, 0.0f), "grad");
  vk::Buffer exp_avg = test::upload(std::vector<float>(n, 0.0f), "exp_avg");
  vk::Buffer exp_avg_sq = test::upload(std::vector<float>(n, 0.0f), "exp_avg_sq");
  kernels::OptimizerTensor tensor;
  tensor.param = param_buffer.range(0, n * 4);
  tensor.grad = grad_buffer.range(0, n * 4);
  tensor.state0 = exp_avg.range(0, n * 4);
  tensor.state1 = exp_avg_sq.range(0, n * 4);
  tensor.count = static_cast<uint32_t>(n);
  kernels::TensorList list(test::context(), {tensor}, 256, "scaler_list");
  kernels::AdamWConfig adamw;
  float max_norm = 1.0f;
  double base_lr = 0;
  if (adam) {
    const nlohmann::json& config = golden["adamw"];
    adamw.beta1 = config["betas"][0].get<double>();
    adamw.beta2 = config["betas"][1].get<double>();
    adamw.eps = config["eps"].get<float>();
    adamw.weight_decay = config["weight_decay"].get<float>();
    max_norm = config["max_norm"].get<float>();
    base_lr = config["lr"].get<double>();
  }
  vk::Buffer step_state = kernels::allocate_step_state(test::context());
  vk::Sequence sequence(test::context());
  sequence.record([&](vk::Recorder& r) {
    kernels::grad_norm(r, list, step_state.range(), max_norm);
    if (adam) kernels::adamw(r, list, step_state.range(), adamw);
  });
  LossScaler scaler(true, settings_of(golden));
  for (size_t i = 0; i < records.size(); i++) {
    const nlohmann::json& record = records[i];
    const int64_t step = record["step"].get<int64_t>();
    CAPTURE(step);
    CHECK(scaler.scale() == json_float(record["scale"]));
    // The scaled backward: dloss/dp = scale * c in fp32, as torch's.
    std::vector<float> grad(n);
    for (size_t k = 0; k < n; k++) {
      grad[k] = scaler.scale() * json_float(golden["coefficients"][i][k]);
      CHECK(same_float(grad[k], json_float(record["scaled_grad"][k])));
    }
    test::context().upload(grad_buffer, grad.data(), 0, n * 4);
    // HF Trainer's LambdaLR: lr / (1 + 0.5 k), k = scheduler steps taken (not the skipped ones).
    const double lr = base_lr / (1.0 + 0.5 * double(scaler.schedule_step(step) - 1));
    if (adam) CHECK(lr == doctest::Approx(record["lr"].get<double>()).epsilon(1e-15));
    kernels::StepState state;
    kernels::set_optimizer_step(state, static_cast<uint32_t>(scaler.optimizer_step(step)), lr, adamw);
    state.grad_scale = scaler.inverse_scale();
    kernels::write_step_state(test::context(), step_state, state);
    test::context().submit({&sequence});
    const kernels::StepState after = kernels::read_step_state(test::context(), step_state);
    const bool found_inf = (after.flags & kernels::step_flag_non_finite_gradient) != 0;
    CHECK(scaler.update(found_inf) == record["skipped"].get<bool>());
    CHECK(scaler.growth_tracker() == record["growth_tracker"].get<int64_t>());
    const float expected_norm = json_float(record["grad_norm"]);
    if (std::isfinite(expected_norm)) CHECK(std::fabs(after.grad_norm - expected_norm) <= 4e-7 * expected_norm);
    std::vector<float> now(n);
    test::context().download(param_buffer, now.data(), 0, n * 4);
    // A few fp32 ulps of torch's CPU AdamW (see test_kernels_optimizer's golden case).
    for (size_t k = 0; k < n; k++) CHECK(std::fabs(now[k] - json_float(record["param"][k])) <= 3e-7);
  }
}

TEST_CASE("loss scaler: a scaled AdamW run with forced overflows replays torch's step by step (golden)") {
  replay_on_device(load_reference()["cases"]["small_interval"]);
}

TEST_CASE("loss scaler: at the fp32 ceiling growth is refused and a 2^127-scaled gradient is no overflow (golden)") {
  // The scaled gradients (0.3 x 2^127) are finite but their squares are not: only a norm taken
  // after unscaling (grad_norm applies grad_scale first) lets these steps through, as in torch.
  replay_on_device(load_reference()["cases"]["ceiling"]);
}

TEST_CASE("loss scaler: 2^16-scaled LoRA steps are bit-identical to unscaled ones (powers of two are exact)") {
  const ScaledRun plain = run_lora_steps(nullptr, 4);
  train::LossScaler scaler(true);
  const ScaledRun scaled = run_lora_steps(&scaler, 4);
  CHECK(scaler.skipped_steps() == 0);
  CHECK(scaler.scale() == 65536.0f);
  for (size_t step = 0; step < plain.losses.size(); step++) {
    CAPTURE(step);
    CHECK(scaled.losses[step] == plain.losses[step]);  // the loss is reported unscaled
    CHECK(scaled.norms[step] == plain.norms[step]);    // the norm is of the unscaled gradient
    CHECK(test::same_bits(scaled.adapter_after[step], plain.adapter_after[step]));
  }
}

TEST_CASE("loss scaler: an overflowing scale skips steps (weights untouched) and backs off until steps go through") {
  // In fp32 storage even 2^127 does not overflow this model's backward, so the loss weights are
  // made tiny (x 2^-40, the normalised loss unchanged): the loss gradient's factor scale / Σw then
  // overflows fp32 for the first scales, giving Inf/NaN gradients with a finite loss, as an fp16
  // overflow does. GradScaler halves the scale and skips, again and again, until it fits.
  const float weight_factor = std::ldexp(1.0f, -40);
  const auto folder = test::source_dir() / "tests/data/peft_extras";
  const double weight_sum =
      test::golden_batch(test::GoldenFile(folder / "mts_untied.golden.bin")).weight_sum * weight_factor;
  const float loss_weight = static_cast<float>(1.0 / weight_sum);
  int largest_finite = 127;  // the largest k with loss_weight * 2^k finite
  while (!std::isfinite(loss_weight * std::ldexp(1.0f, largest_finite))) largest_finite--;
  REQUIRE(largest_finite + 3 <= 127);
  train::LossScalerSettings settings;
  settings.init_scale = std::ldexp(1.0f, largest_finite + 3);
  train::LossScaler scaler(true, settings);
  const ScaledRun run = run_lora_steps(&scaler, 10, weight_factor);
  REQUIRE(run.skipped.front());
  REQUIRE_FALSE(run.skipped.back());
  const ScaledRun plain = run_lora_steps(nullptr, 1, weight_factor);
  int64_t skipped = 0;
  for (size_t step = 0; step < run.skipped.size() && run.skipped[step]; step++) {
    CAPTURE(step);
    skipped++;
    CHECK(std::isfinite(run.losses[step]));  // the loss itself is finite: only the gradient overflowed
    // Nothing changed: the adapter is still the initial one (the unscaled run's before its step).
    CHECK(test::same_bits(run.adapter_after[step], run.adapter_after[0]));
  }
  MESSAGE("overflow run: " << skipped << " steps skipped from scale 2^" << largest_finite + 3);
  CHECK(skipped >= 3);  // at least the three scales whose factor on the loss gradient overflows
  CHECK(scaler.skipped_steps() == skipped);
  CHECK(scaler.scale() == std::ldexp(1.0f, largest_finite + 3 - int(skipped)));  // halved per skip, no growth yet
  // The first step taken is AdamW's step 1 at the schedule's first lr on the same batch: the same
  // update as the unscaled run's first step, up to the last bits of the clipped, unscaled gradient.
  const std::vector<float>& first = run.adapter_after[size_t(skipped)];
  double worst = 0;
  for (size_t k = 0; k < first.size(); k++)
    worst = std::max(worst, double(std::fabs(first[k] - plain.adapter_after[0][k])));
  MESSAGE("overflow run: first step taken vs the unscaled first step, max abs difference " << worst);
  CHECK(worst <= 1e-6);
}

}  // TEST_SUITE
