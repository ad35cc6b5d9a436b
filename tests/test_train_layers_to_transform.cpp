// PEFT's layers_to_transform / layers_pattern: LoRA in some layers only. The plan holds only those
// layers' LoRA tensors, the adapter file only their tensors, adapter_config.json PEFT's two keys,
// and the adapter loads back (continue training, export) with the same layers.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

TEST_SUITE("train_e2e") {

TEST_CASE("layers_to_transform: LoRA only in the listed layers, PEFT's keys in adapter_config.json") {
  const fs::path root = test::binary_dir() / "test-output" / "e2e";
  train::TrainConfig all = test::tiny_lora_config(root, "e2e-layers-all");
  all.max_steps = 3;
  train::TrainConfig some = all;
  some.output_dir = test::temp_dir("e2e-layers-1").string();
  some.layers_to_transform = "1";
  some.layers_pattern = "layers";
  train::TrainSummary all_summary = train::train(all);
  train::TrainSummary summary = train::train(some);
  // Two layers, one adapted: half the adapter parameters (and their gradients and AdamW states).
  CHECK(summary.plan.bytes(vk::Category::adapter_params) * 2 == all_summary.plan.bytes(vk::Category::adapter_params));
  CHECK(summary.measured.category_current(vk::Category::adapter_params) ==
        summary.plan.bytes(vk::Category::adapter_params));
  CHECK(summary.last_loss < summary.first_loss + 1.0);  // trained, finite
  json config = json::parse(read_text_file(fs::path(some.output_dir) / "adapter_config.json"));
  CHECK(config["layers_to_transform"] == json::array({1}));
  CHECK(config["layers_pattern"] == "layers");
  model::SafetensorsFile weights(fs::path(some.output_dir) / "adapter_model.safetensors");
  size_t layer0 = 0, layer1 = 0;
  for (const auto& tensor : weights.tensors()) {
    layer0 += tensor.name.find(".layers.0.") != std::string::npos;
    layer1 += tensor.name.find(".layers.1.") != std::string::npos;
  }
  CHECK(layer0 == 0);
  CHECK(layer1 == 14);  // 7 modules x (A, B)
  model::AdapterFile file = model::load_adapter_config(some.output_dir);
  CHECK(file.settings.layers == std::vector<uint32_t>{1});

  // Continue training from it: the adapter's layers win, and the run loads only those tensors.
  train::TrainConfig again = some;
  again.output_dir = test::temp_dir("e2e-layers-continue").string();
  again.layers_to_transform.clear();
  again.adapter = some.output_dir;
  train::TrainSummary continued = train::train(again);
  CHECK(continued.plan.settings.lora_layers == std::vector<uint32_t>{1});

  train::TrainConfig bad = some;
  bad.output_dir = test::temp_dir("e2e-layers-bad").string();
  bad.layers_to_transform = "2";
  CHECK_THROWS_WITH_AS(train::train(bad), doctest::Contains("layer 2 does not exist, the model has 2"), UserError);
  bad.layers_to_transform = "x";
  CHECK_THROWS_WITH_AS(train::train(bad), doctest::Contains("'x' is not a layer index"), UserError);
  bad.layers_to_transform = "1";
  bad.layers_pattern = "h";
  CHECK_THROWS_WITH_AS(train::train(bad), doctest::Contains("--layers-pattern h is unknown"), UserError);
}

}  // TEST_SUITE
