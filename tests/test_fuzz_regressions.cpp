// Regression tests for what the libFuzzer targets (tests/fuzz/) found, one case per finding, each
// named after its target; they run in the normal suites of the code they cover.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/train/config.hpp"

using namespace vkt;

namespace {
std::filesystem::path write_temp(const std::string& name, const std::string& bytes) {
  auto path = std::filesystem::temp_directory_path() / ("vkt-fuzz-regression-" + name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}
}  // namespace

TEST_SUITE("train") {
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
