// The README's demo, shortened: QLoRA (NF4 + double quantization, examples/demo/qlora.yaml) on the
// bundled base model (examples/base) for a few steps must raise the form metric (held-out answers
// that parse as JSON with all five keys) above the base model's, and some content: fields right (the
// base has none) in answers that are not one constant record. Issue 20's goal (half the records
// right) is not reached yet, so this bound stays low (README "Results").
#include <doctest/doctest.h>

#include "engine/train/config.hpp"
#include "engine/train/generation_eval.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

TEST_SUITE("demo") {

TEST_CASE("demo: a short QLoRA run on examples/base raises form and content on held-out verses") {
  const fs::path demo = test::source_dir() / "examples" / "demo";
  const fs::path base = test::source_dir() / "examples" / "base";
  REQUIRE_MESSAGE(fs::exists(base / "model.safetensors"), "examples/base is committed with the repository");

  train::TrainConfig config;
  train::apply_yaml_file(config, (demo / "qlora.yaml").string());
  config.model = base.string();
  config.data = (demo / "train.jsonl").string();
  config.output_dir = test::temp_dir("demo-adapter").string();
  config.headless = true;
  config.max_steps = 120;  // the demo runs the YAML's 400 steps
  config.logging_steps = config.max_steps;
  train::train(config);

  train::GenerationEvalOptions options;
  options.model = base;
  options.data = demo / "test.jsonl";
  options.json_keys = {"book", "chapter", "verse", "first", "last"};
  options.limit = 16;
  options.max_new_tokens = 64;  // a record is ~50 tokens of this 2048-token vocabulary
  options.base_format = kernels::WeightFormat::nf4;
  train::GenerationEvalResult before = train::evaluate_generation(test::context(), options);
  options.adapter = fs::path(config.output_dir);
  train::GenerationEvalResult after = train::evaluate_generation(test::context(), options);
  MESSAGE("form " << before.form_rate << " -> " << after.form_rate << ", every field " << before.content_rate << " -> "
                  << after.content_rate << ", fields " << before.field_rate << " -> " << after.field_rate
                  << ", distinct answers " << before.distinct_outputs << " -> " << after.distinct_outputs << "; e.g. "
                  << after.examples.front().output);
  CHECK(after.form_rate >= before.form_rate + 0.5);
  CHECK(after.form_rate >= 0.75);
  // Content, at this short length: some fields right (the base has none) and answers that are not one
  // constant record (the demo of issue 20 wrote one record for every verse).
  CHECK(after.field_rate >= before.field_rate + 0.1);
  CHECK(after.distinct_outputs >= 3);
}

}  // TEST_SUITE
