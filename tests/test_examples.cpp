// The YAML files under examples/ (the base model's recipes, the demo's run) against the trainer's
// parser and flag rules: they run only by hand or in hour-long jobs, so a renamed flag or a refused
// value must fail here, not an hour into a run.
#include <doctest/doctest.h>

#include <filesystem>

#include "engine/train/config.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

TEST_SUITE("train") {

TEST_CASE("examples: every training YAML under examples/ parses and passes the flag rules") {
  int checked = 0;
  for (const char* folder : {"recipes", "demo"})
    for (const auto& entry : fs::directory_iterator(test::source_dir() / "examples" / folder)) {
      if (entry.path().extension() != ".yaml") continue;
      CAPTURE(entry.path().string());
      train::TrainConfig config;
      config.model = "model";
      config.data = "data.jsonl";
      config.output_dir = "out";
      CHECK_NOTHROW(train::apply_yaml_file(config, entry.path().string()));
      CHECK_NOTHROW(train::validate(config));
      checked++;
    }
  CHECK(checked >= 4);
}

}  // TEST_SUITE
