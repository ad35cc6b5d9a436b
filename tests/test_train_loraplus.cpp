// LoRA+ (--loraplus-lr-ratio) against PEFT 0.21.2's create_loraplus_optimizer
// (tests/reference/loraplus_golden.py; data in tests/data/loraplus/): 20 AdamW steps from the
// adapters peft_extras_golden.py committed (LoRA all-linear + modules_to_save on llama3, + trainable
// tokens on the tied smollm2), ratio 16, weight decay 0.01, clipping at 1.0, linear schedule with 2
// warmup steps. Bounds (train_golden's): each step's loss and gradient norm within 1e-4 relative,
// every trained tensor as vktune saves it within 1e-4 relative (||a - a_ref|| / ||a_ref||). The same
// run at ratio 1 (plain LoRA) must miss those bounds, so the test shows the ratio is what matches.
#include <doctest/doctest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"
#include "engine/train/config.hpp"
#include "engine/train/monitor.hpp"
#include "engine/train/step_runner.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_run.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

fs::path extras_dir() { return test::source_dir() / "tests/data/peft_extras"; }
fs::path base_folder(const std::string& name) {
  return test::source_dir() / "tests/data/hf" / (name.find("untied") != std::string::npos ? "llama3" : "smollm2");
}

// Worst relative errors of a 20-step run at `ratio` against the golden trajectory.
struct TrajectoryErrors {
  double loss = 0, grad_norm = 0, final_tensor = 0;
  std::string worst_tensor;
};

TrajectoryErrors train_case(const std::string& name, double ratio) {
  auto& ctx = test::context();
  test::GoldenFile golden(test::source_dir() / "tests/data/loraplus" / (name + ".golden.bin"));
  test::GoldenBatch batch = test::golden_batch(test::GoldenFile(extras_dir() / (name + ".golden.bin")));
  auto [lora, session] = test::open_adapter_session(base_folder(name), extras_dir() / name / "adapter", batch);
  train::OptimizerSettings optimizer;
  optimizer.weight_decay = 0.01;
  optimizer.max_grad_norm = 1.0;
  optimizer.loraplus_lr_ratio = ratio;
  train::StepRunner runner(ctx, *session, optimizer);
  runner.reset();
  const auto lrs = golden["train.lr"].doubles();
  const auto losses = golden["train.loss"].floats();
  const auto norms = golden["train.grad_norm"].floats();
  TrajectoryErrors errors;
  for (size_t step = 0; step < losses.size(); step++) {
    runner.step(int64_t(step) + 1, lrs[step], {batch});
    const double loss = runner.take_loss_sum(), norm = runner.device_state().grad_norm;
    errors.loss = std::max(errors.loss, std::fabs(loss - losses[step]) / losses[step]);
    errors.grad_norm = std::max(errors.grad_norm, std::fabs(norm - norms[step]) / norms[step]);
  }
  // Every trained tensor as the adapter vktune writes names it (PEFT's saved names).
  const fs::path saved = test::temp_dir("loraplus_" + name);
  model::save_adapter(ctx, *session->buffers, session->plan.shape, lora, "tests/data/hf", saved);
  model::SafetensorsFile file(saved / "adapter_model.safetensors");
  size_t compared = 0;
  for (const auto& [key, tensor] : golden.tensors()) {
    if (key.rfind("train.final.", 0) != 0) continue;
    const std::string tensor_name = key.substr(12);
    INFO(tensor_name);
    REQUIRE(file.contains(tensor_name));
    const double error = test::relative_error(model::to_fp32(file.tensor(tensor_name)), tensor.floats());
    if (error > errors.final_tensor) {
      errors.final_tensor = error;
      errors.worst_tensor = tensor_name;
    }
    compared++;
  }
  CHECK(compared >= 28);  // 2 layers x 7 modules x (A, B), plus the extras
  return errors;
}

}  // namespace

TEST_SUITE("train_golden") {

TEST_CASE("train golden: LoRA+ (ratio 16) matches PEFT's create_loraplus_optimizer over 20 AdamW steps") {
  for (const char* name : {"mts_untied", "tokens_tied"}) {
    INFO(std::string(name));
    const auto meta =
        test::GoldenFile(test::source_dir() / "tests/data/loraplus" / (std::string(name) + ".golden.bin"))["meta.json"];
    const double ratio =
        nlohmann::json::parse(meta.data.begin(), meta.data.end())["train"]["loraplus_lr_ratio"].get<double>();
    REQUIRE(ratio == 16.0);
    const TrajectoryErrors errors = train_case(name, ratio);
    MESSAGE(std::string(name) << ": worst relative over 20 steps: loss " << errors.loss << ", grad norm "
                              << errors.grad_norm << ", final tensor " << errors.final_tensor << " ("
                              << errors.worst_tensor << ")");
    CHECK(errors.loss <= 1e-4);
    CHECK(errors.grad_norm <= 1e-4);
    CHECK(errors.final_tensor <= 1e-4);
    // Plain LoRA (ratio 1) on the same run is far off: the bounds above cannot be met without LoRA+.
    const TrajectoryErrors plain = train_case(name, 1.0);
    MESSAGE(std::string(name) << " at ratio 1: loss " << plain.loss << ", final tensor " << plain.final_tensor);
    CHECK(plain.loss > 100 * 1e-4);
    CHECK(plain.final_tensor > 100 * 1e-4);
  }
}

TEST_CASE("train golden: LoRA+ scales lora_B only, as PEFT's grouping") {
  CHECK(train::loraplus_lr_scale("model.layers.0.self_attn.q_proj.lora_B", 16) == 16.0f);
  CHECK(train::loraplus_lr_scale("model.layers.1.self_attn.qkv_proj.lora_B", 4) == 4.0f);
  CHECK(train::loraplus_lr_scale("model.layers.0.self_attn.q_proj.lora_A", 16) == 1.0f);
  CHECK(train::loraplus_lr_scale("model.embed_tokens.weight", 16) == 1.0f);
  CHECK(train::loraplus_lr_scale("lm_head.weight", 16) == 1.0f);
}

}  // TEST_SUITE

TEST_SUITE("train_inputs") {

TEST_CASE("flags: --loraplus-lr-ratio (and YAML loraplus_lr_ratio) reaches the config; bad values are refused") {
  train::TrainConfig config;
  config.model = "m", config.data = "d", config.output_dir = "o";
  CHECK(config.loraplus_lr_ratio == 1.0);  // plain LoRA unless asked
  const fs::path yaml = test::temp_dir("loraplus_yaml") / "train.yaml";
  write_file_atomically(yaml, "loraplus_lr_ratio: 16\n");
  train::apply_yaml_file(config, yaml.string());
  CHECK(config.loraplus_lr_ratio == 16.0);
  CHECK_NOTHROW(train::validate(config));
  for (const auto& spec : train::option_table())
    if (spec.name == "loraplus_lr_ratio") train::set_option(config, spec, "0");
  CHECK(test::user_error_of([&] { train::validate(config); }).find("--loraplus-lr-ratio must be positive") !=
        std::string::npos);
  config.loraplus_lr_ratio = 16;
  config.method = spec::Method::full;
  CHECK(test::user_error_of([&] { train::validate(config); }).find("--method full has none") != std::string::npos);

  // run.json keeps the ratio for the dashboard's run panel; an older run.json reads as plain LoRA.
  train::RunInfo info;
  info.loraplus_lr_ratio = 16;
  CHECK(train::run_info_from_json(train::run_info_to_json(info, train::RunState::running)).loraplus_lr_ratio == 16.0);
  CHECK(train::run_info_from_json(R"({"schedule": {"peak_lr": 0.001}})").loraplus_lr_ratio == 1.0);
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

TEST_CASE("train: --loraplus-lr-ratio reaches the optimizer: one AdamW step moves lora_B by lr x ratio") {
  // B starts at 0, so step 1's gradient of A is 0 and Adam's first step moves each B element by
  // lr * |g| / (|g| + eps): the largest is lr * ratio to a few ulps.
  for (double ratio : {1.0, 16.0}) {
    INFO("ratio " << ratio);
    train::TrainConfig config =
        test::tiny_lora_config(test::binary_dir() / "test-output" / "e2e", "loraplus-" + std::to_string(int(ratio)));
    config.max_steps = 1;
    config.loraplus_lr_ratio = ratio;
    train::train(config);
    model::SafetensorsFile adapter(fs::path(config.output_dir) / "adapter_model.safetensors");
    float largest_b = 0;
    size_t b_tensors = 0;
    for (const model::TensorView& tensor : adapter.tensors()) {
      if (tensor.name.find("lora_B") == std::string::npos) continue;
      for (float value : model::to_fp32(tensor)) largest_b = std::max(largest_b, std::fabs(value));
      b_tensors++;
    }
    CHECK(b_tensors == 14);
    CHECK(largest_b == doctest::Approx(config.learning_rate * ratio).epsilon(1e-4));
    const auto run = nlohmann::json::parse(read_text_file(fs::path(config.output_dir) / "run.json"));
    CHECK(run["schedule"]["loraplus_lr_ratio"].get<double>() == ratio);
  }
}

}  // TEST_SUITE
