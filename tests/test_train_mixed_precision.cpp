// --bf16 / --fp16 / --pure-bf16 (HF TrainingArguments' names): one row each in the option table
// (flag, YAML key, run.json field), their contradictions, the run settings they give the planner,
// and the training refusal while the 16-bit activation kernels are not wired.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/train/config.hpp"
#include "engine/train/mixed_precision.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"

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
}

TEST_CASE("mixed precision: vktune train refuses 16-bit runs until the kernels land, pointing at vktune plan") {
  for (const char* flag : {"bf16", "fp16"}) {
    for (spec::Method method : {spec::Method::lora, spec::Method::full}) {
      CAPTURE(flag);
      train::TrainConfig config = minimal_config();
      config.method = method;
      train::set_option(config, option(flag), "true");
      const std::string error = user_error(config, [](const train::TrainConfig& c) { train::train(c); });
      CAPTURE(error);
      CHECK(error.find(std::string("--") + flag) != std::string::npos);
      CHECK(error.find("16-bit activations are being wired; `vktune plan") != std::string::npos);
      CHECK(error.find("already shows the memory") != std::string::npos);
    }
  }
  CHECK(user_error(minimal_config(), train::refuse_unwired_precision).empty());
}

}  // TEST_SUITE
