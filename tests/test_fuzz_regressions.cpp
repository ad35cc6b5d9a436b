// Regression tests for what the libFuzzer targets (tests/fuzz/) found, one case per finding, each
// named after its target; they run in the normal suites of the code they cover.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/base/error.hpp"
#include "engine/merge/config.hpp"
#include "engine/model/config.hpp"
#include "engine/train/config.hpp"
#include "engine/train/dataset.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;

namespace {
std::filesystem::path write_temp(const std::string& name, const std::string& bytes) {
  auto path = std::filesystem::temp_directory_path() / ("vkt-fuzz-regression-" + name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}
}  // namespace

TEST_SUITE("model_io") {
// fuzz_model_config: "hidden_size": 3.3e125 was cast to int64_t (undefined behaviour; UBSan
// stopped there), and 2^64-1 wrapped to -1 ("must be positive, got -1").
TEST_CASE("fuzz_model_config: integers beyond int64 are out of range, not wrapped") {
  std::ifstream in(std::string(VKT_SOURCE_DIR) + "/tests/data/hf/llama3/config.json");
  nlohmann::json document = nlohmann::json::parse(in);
  for (nlohmann::json huge : {nlohmann::json(3.3e125), nlohmann::json(-1e19), nlohmann::json(UINT64_MAX)}) {
    INFO(huge.dump());
    document["hidden_size"] = huge;
    CHECK_THROWS_WITH_AS(model::parse_model_config(document, "config.json"),
                         doctest::Contains("\"hidden_size\" is out of range"), UserError);
  }
}
}

TEST_SUITE("merge") {
// fuzz_merge_yaml: a mapping used as a key ("? model: x") made check_keys' as<std::string>()
// throw yaml-cpp's TypedBadConversion out of parse_merge_config.
// fuzz_merge_yaml: a model path longer than the system allows made fs::exists throw
// filesystem_error (ENAMETOOLONG) out of parse_model_ref.
TEST_CASE("fuzz_merge_yaml: a model path too long for the system is no raw filesystem_error") {
  std::string yaml = "merge_method: linear\nmodels:\n  - model: ./" + std::string(5000, 'm') + "\n";
  auto parse = [&] {
    try {
      merge::parse_merge_config(yaml, "merge.yaml", "/nonexistent");
    } catch (const UserError&) {}
  };
  CHECK_NOTHROW(parse());
}

TEST_CASE("fuzz_merge_yaml: a mapping as a key is a UserError naming the line") {
  CHECK_THROWS_WITH_AS(
      merge::parse_merge_config("merge_method: linear\n? model: x\n: 1\n", "merge.yaml", "/nonexistent"),
      doctest::Contains("merge.yaml:2: unexpected YAML here"), UserError);
}
}

TEST_SUITE("train") {
// Found with fuzz_merge_yaml's input class: the training YAML reads keys and list items the same way.
// fuzz_train_yaml: a mapping value (lr_scheduler_kwargs) with bytes that are not UTF-8 made its
// JSON dump throw nlohmann's type_error 316 out of apply_yaml_file.
TEST_CASE("fuzz_train_yaml: a mapping value that is not UTF-8 is a value or a UserError, never a raw throw") {
  auto path = write_temp("kwargs.yaml", "lr_scheduler_kwargs: {num_cycles: \"\xfd\"}\n");
  train::TrainConfig config;
  auto apply = [&] {
    try {
      train::apply_yaml_file(config, path.string());
    } catch (const UserError&) {}
  };
  CHECK_NOTHROW(apply());
  std::filesystem::remove(path);
}

TEST_CASE("fuzz_train_yaml: a mapping as a key or a list in a list is a UserError naming the line") {
  auto complex_key = write_temp("complex_key.yaml", "lora_r: 8\n? {a: b}\n: 1\n");
  train::TrainConfig config;
  CHECK_THROWS_WITH_AS(train::apply_yaml_file(config, complex_key.string()),
                       doctest::Contains("complex_key.yaml:2: unexpected YAML here"), UserError);
  auto nested = write_temp("nested.yaml", "target_modules: [[q_proj], v_proj]\n");
  CHECK_THROWS_WITH_AS(train::apply_yaml_file(config, nested.string()),
                       doctest::Contains("nested.yaml:1: unexpected YAML here"), UserError);
  std::filesystem::remove(complex_key);
  std::filesystem::remove(nested);
}

// fuzz_jsonl: a number beyond double's range makes nlohmann throw out_of_range (406), not
// parse_error, and it left read_jsonl as a raw exception.
TEST_CASE("fuzz_jsonl: a number beyond double's range is a bad line naming file:line") {
  auto path = write_temp("overflow.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\", \"n\": 1E400}\n");
  CHECK_THROWS_WITH_AS(train::read_jsonl(path.string(), text::ChatFormat{}),
                       doctest::Contains("overflow.jsonl:2: not valid JSON"), UserError);
  std::filesystem::remove(path);
}

// fuzz_train_yaml: a path that is not UTF-8 (legal on Linux) made to_json, which writes run.json,
// throw nlohmann's type_error 316 out of the trainer; it is kept with U+FFFD in its place.
TEST_CASE("fuzz_train_yaml: a config value that is not UTF-8 is written to run.json's config") {
  auto path = write_temp("train.yaml", "model: m\ndata: d\xc7jsonl\noutput_dir: out\n");
  train::TrainConfig config;
  train::apply_yaml_file(config, path.string());
  std::string text;
  REQUIRE_NOTHROW(text = train::to_json(config));
  CHECK(nlohmann::json::parse(text)["data"] == "d\xef\xbf\xbdjsonl");
  std::filesystem::remove(path);
}
}

TEST_SUITE("train_e2e") {
// Found after fuzz_train_yaml: the same non-UTF-8 path reached trainer_state.json (the data
// path) and adapter_config.json (the model path), so `train` failed at its first checkpoint
// with "error: [json.exception.type_error.316]" and exit 3.
TEST_CASE("train: model and data paths that are not UTF-8 reach checkpoints and the adapter") {
  namespace fs = std::filesystem;
  fs::path root = test::temp_dir("fuzz-non-utf8");
  fs::path model = root / "model\xc7";
  fs::copy(test::tiny_model(test::binary_dir() / "test-output" / "fuzz-regressions" / "base"), model);
  fs::path data = root / "data\xc7.jsonl";
  fs::copy_file(test::tiny_dataset(root / "data.jsonl", 8), data);
  train::TrainConfig config;
  config.model = model.string();
  config.data = data.string();
  config.output_dir = (root / "out").string();
  config.headless = true;
  config.max_steps = 2;
  config.save_steps = 1;
  config.per_device_train_batch_size = 2;
  config.target_modules = "q_proj";
  config.lora_r = 4;
  REQUIRE_NOTHROW(train::train(config));
  CHECK(fs::exists(root / "out" / "checkpoint-1" / "trainer_state.json"));
  CHECK(fs::exists(root / "out" / "adapter_config.json"));
}
}
