// --bf16 / --fp16 / --pure-bf16 (HF TrainingArguments' names): one row each in the option table
// (flag, YAML key, run.json field), their contradictions, the run settings they give the planner,
// LoRA training with 16-bit activations (full finetuning in 16 bits: test_train_full16.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/train/config.hpp"
#include "engine/train/mixed_precision.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {
const train::OptionSpec& option(const std::string& name) {
  for (const auto& spec : train::option_table())
    if (spec.name == name) return spec;
  FAIL("no option " << name);
  return train::option_table().front();
}
train::TrainConfig minimal_config() {
  train::TrainConfig config;
  config.model = "model";
  config.data = "data.jsonl";
  config.output_dir = "out";
  return config;
}
std::string user_error(const train::TrainConfig& config, void (*check)(const train::TrainConfig&)) {
  try {
    check(config);
  } catch (const UserError& error) {
    return std::string(error.what()) + " | " + error.hint();
  }
  return "";
}
}  // namespace

TEST_SUITE("train") {

TEST_CASE("mixed precision: --bf16 / --fp16 / --pure-bf16 from flags, YAML and into run.json") {
  train::TrainConfig config = minimal_config();
  train::set_option(config, option("bf16"), "true");
  CHECK(config.bf16);
  CHECK(train::activation_dtype(config) == kernels::DType::bf16);
  const fs::path yaml = test::temp_dir("mixed_precision_yaml") / "run.yaml";
  std::ofstream(yaml) << "fp16: true\nmethod: full\n";
  train::TrainConfig from_yaml = minimal_config();
  train::apply_yaml_file(from_yaml, yaml.string());
  CHECK(from_yaml.fp16);
  CHECK(train::activation_dtype(from_yaml) == kernels::DType::f16);
  const nlohmann::json saved = nlohmann::json::parse(train::to_json(from_yaml));
  CHECK(saved.at("fp16") == true);
  CHECK(saved.at("bf16") == false);
  CHECK(saved.at("pure_bf16") == false);
  CHECK(train::activation_dtype(minimal_config()) == kernels::DType::f32);
  // The planner's settings follow: activations in 16 bits; 16-bit full finetuning keeps its flag.
  train::TrainConfig full = minimal_config();
  full.method = spec::Method::full;
  full.bf16 = true;
  full.pure_bf16 = true;
  const spec::RunSettings settings = train::run_settings(full, 64, nullptr);
  CHECK(settings.activation_dtype == kernels::DType::bf16);
  CHECK(settings.pure_bf16);
}

TEST_CASE("mixed precision: contradictions are UserErrors with a hint") {
  train::TrainConfig both = minimal_config();
  both.bf16 = both.fp16 = true;
  CHECK(user_error(both, train::validate).find("--bf16 and --fp16 contradict each other") != std::string::npos);
  train::TrainConfig pure_lora = minimal_config();
  pure_lora.bf16 = pure_lora.pure_bf16 = true;  // LoRA: no master weights to drop
  CHECK(user_error(pure_lora, train::validate).find("--pure-bf16") != std::string::npos);
  train::TrainConfig pure_fp16 = minimal_config();
  pure_fp16.method = spec::Method::full;
  pure_fp16.fp16 = pure_fp16.pure_bf16 = true;
  CHECK(user_error(pure_fp16, train::validate).find("--method full --bf16") != std::string::npos);
  train::TrainConfig fine = minimal_config();
  fine.method = spec::Method::full;
  fine.bf16 = fine.pure_bf16 = true;
  CHECK(user_error(fine, train::validate).empty());
  fine.optim = spec::Optimizer::sgd;  // stochastic rounding is AdamW's kernel only
  CHECK(user_error(fine, train::validate).find("--optim adamw") != std::string::npos);
}

TEST_CASE("mixed precision: LoRA trains with --bf16 and --fp16 (activations in 16 bits); ia3 refuses") {
  const fs::path root = test::binary_dir() / "test-output" / "train";
  train::TrainConfig fp32 = test::tiny_lora_config(root, "mixed-fp32");
  fp32.max_steps = 4;
  fp32.logging_steps = 1;
  train::TrainSummary reference = train::train(fp32);
  const std::vector<double> reference_losses = test::logged_losses(fp32.output_dir);
  for (const char* flag : {"bf16", "fp16"}) {
    CAPTURE(flag);
    train::TrainConfig config = fp32;
    config.output_dir = test::temp_dir(std::string("mixed-") + flag).string();
    train::set_option(config, option(flag), "true");
    train::TrainSummary summary = train::train(config);
    // Saved activations take half the bytes, planned and measured alike.
    const double planned = double(summary.plan.bytes(vk::Category::activations));
    CHECK(planned <= 0.55 * double(reference.plan.bytes(vk::Category::activations)));
    CHECK(double(summary.measured.category_peak(vk::Category::activations)) == doctest::Approx(planned).epsilon(0.10));
    // Same run, 16-bit storage: the losses follow fp32's within the storage rounding (bf16 keeps 8
    // significant bits: 2^-8 relative per value; a few roundings on the path, so 2% of the loss),
    // and they differ (the 16-bit path really ran).
    const std::vector<double> losses = test::logged_losses(config.output_dir);
    REQUIRE(losses.size() == reference_losses.size());
    bool differs = false;
    for (size_t i = 0; i < losses.size(); i++) {
      CHECK(std::abs(losses[i] - reference_losses[i]) <= 0.02 * std::abs(reference_losses[i]));
      differs = differs || losses[i] != reference_losses[i];
    }
    CHECK(differs);
    // fp16 scales the loss (GradScaler): metrics.jsonl carries the scale and the skipped steps.
    std::ifstream metrics(fs::path(config.output_dir) / "metrics.jsonl");
    std::string line;
    bool scale_logged = false;
    while (std::getline(metrics, line)) {
      nlohmann::json entry = nlohmann::json::parse(line);
      if (entry.contains("loss_scale")) {
        scale_logged = true;
        // 2^16 halved once per overflow (none expected in 4 steps of this tiny model)
        CHECK(entry.at("loss_scale").get<double>() == 65536.0 * std::pow(0.5, entry.at("skipped_steps").get<double>()));
        CHECK(entry.at("skipped_steps") == 0);
      }
    }
    CHECK(scale_logged == (std::string(flag) == "fp16"));
  }
  train::TrainConfig ia3 = minimal_config();
  ia3.bf16 = true;
  ia3.peft_type = spec::PeftType::ia3;
  CHECK(user_error(ia3, train::refuse_unwired_precision).find("--peft-type ia3 --bf16") != std::string::npos);
  CHECK(user_error(minimal_config(), train::refuse_unwired_precision).empty());
}

}  // TEST_SUITE
