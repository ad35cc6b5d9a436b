// Full finetuning with 16-bit weights (issue 15 item 3, engine/train/sixteen_bit_weights.hpp):
// --method full --bf16 (bf16 weights, fp32 master weights and AdamW states), --fp16 (the same with
// the loss scaler) and --pure-bf16 (no master: stochastic rounding of the update).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/model/safetensors.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {
train::TrainConfig full_config(const std::string& name) {
  train::TrainConfig config =
      test::tiny_lora_config(test::binary_dir() / "test-output" / "train", std::string("full16-") + name);
  config.method = spec::Method::full;
  config.max_steps = 8;
  config.learning_rate = 1e-3;
  return config;
}
double mean_loss(const std::vector<double>& losses, size_t from, size_t to) {
  double sum = 0;
  for (size_t i = from; i < to; i++) sum += losses[i];
  return sum / double(to - from);
}
}  // namespace

TEST_SUITE("train") {

TEST_CASE("full --bf16: bf16 weights beside fp32 masters follow the fp32 run, the loss falls, export is bf16") {
  train::TrainConfig fp32 = full_config("fp32");
  train::TrainSummary reference = train::train(fp32);
  const std::vector<double> reference_losses = test::logged_losses(fp32.output_dir);
  train::TrainConfig bf16 = full_config("bf16");
  bf16.bf16 = true;
  train::TrainSummary summary = train::train(bf16);
  const std::vector<double> losses = test::logged_losses(bf16.output_dir);
  REQUIRE(losses.size() == reference_losses.size());
  // The masters (their own category, kept by StepRunner::reset: zeroed masters would turn every
  // weight into 0 at the first update, and the loss into ln(vocab)) are planned and measured.
  const double master = double(summary.plan.bytes(vk::Category::master_weights));
  CHECK(master > 0);
  CHECK(double(summary.measured.category_peak(vk::Category::master_weights)) == doctest::Approx(master).epsilon(0.1));
  // Linear weights and tables in bf16: base weights take about half the fp32 run's (norms stay fp32).
  const double weights_ratio =
      double(summary.plan.bytes(vk::Category::base_weights)) / double(reference.plan.bytes(vk::Category::base_weights));
  CAPTURE(weights_ratio);
  CHECK(weights_ratio < 0.52);
  CHECK(weights_ratio > 0.5);
  // Losses: bf16 storage of weights and activations (2^-8 relative per rounding, a few on each
  // path: 2% of the loss, as the LoRA --bf16 test bounds it) and the updates of the same fp32
  // masters; the run really differs from fp32's and learns (last steps below the first ones).
  bool differs = false;
  for (size_t i = 0; i < losses.size(); i++) {
    CAPTURE(i);
    CHECK(std::abs(losses[i] - reference_losses[i]) <= 0.02 * std::abs(reference_losses[i]));
    differs = differs || losses[i] != reference_losses[i];
  }
  CHECK(differs);
  CHECK(mean_loss(losses, 6, 8) < mean_loss(losses, 0, 2));
  // Saved as HF saves a bf16 model: BF16 tensors, torch_dtype bfloat16.
  model::SafetensorsFile saved(fs::path(bf16.output_dir) / "model.safetensors");
  CHECK(saved.tensor("model.layers.0.mlp.down_proj.weight").dtype == model::FileDtype::BF16);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(fs::path(bf16.output_dir) / "config.json"));
  CHECK(config.value("torch_dtype", config.value("dtype", "")) == "bfloat16");
}

TEST_CASE("full --pure-bf16: no master copy, stochastic rounding reproducible for a seed; full --fp16 trains") {
  train::TrainConfig pure = full_config("pure");
  pure.bf16 = pure.pure_bf16 = true;
  train::TrainSummary summary = train::train(pure);
  CHECK(summary.plan.bytes(vk::Category::master_weights) == 0);
  const std::vector<double> losses = test::logged_losses(pure.output_dir);
  REQUIRE(losses.size() == 8);
  CHECK(mean_loss(losses, 6, 8) < mean_loss(losses, 0, 2));
  train::TrainConfig again = pure;
  again.output_dir = test::temp_dir("full16-pure-again").string();
  train::train(again);
  CHECK(test::logged_losses(again.output_dir) == losses);  // same seed: the same roundings, bit for bit

  train::TrainConfig fp16 = full_config("fp16");
  fp16.fp16 = true;
  train::TrainSummary fp16_summary = train::train(fp16);
  CHECK(fp16_summary.plan.bytes(vk::Category::master_weights) > 0);
  const std::vector<double> fp16_losses = test::logged_losses(fp16.output_dir);
  REQUIRE(fp16_losses.size() == 8);
  CHECK(mean_loss(fp16_losses, 6, 8) < mean_loss(fp16_losses, 0, 2));
  model::SafetensorsFile saved(fs::path(fp16.output_dir) / "model.safetensors");
  CHECK(saved.tensor("model.embed_tokens.weight").dtype == model::FileDtype::F16);
}

}  // TEST_SUITE
