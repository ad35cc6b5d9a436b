// PEFT's prefix tuning (--peft-type prefix_tuning, issue 17) against PEFT 0.21.2 itself
// (tests/reference/soft_prompt_golden.py, case prefix_llama; data in tests/data/soft_prompt/): 3
// past key/value rows per layer on tests/data/hf/llama3 (GQA: 2 kv heads), the batch as the batcher
// gives it (positions 0 .. T-1; the transformer numbers the tokens after the prefix, as transformers).
// Bounds, those of model_hf: logits max-abs <= 1e-4, loss relative <= 1e-5, the prefix's gradient
// and d loss/d embedding output relative <= 1e-3, in fp32 (and checkpointed) and over an NF4 (+ double
// quant) base; 20 AdamW steps within 1e-4 relative. The adapter vktune writes loads in PEFT with the
// same logits (peft_load_check.json). Export refuses it.
#include <doctest/doctest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/export.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/prefix_tuning.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/config.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const char* const kCase = "prefix_llama";

fs::path soft_dir() { return test::source_dir() / "tests/data/soft_prompt"; }
fs::path base_folder() { return test::source_dir() / "tests/data/hf/llama3"; }
fs::path golden_path() { return soft_dir() / (std::string(kCase) + ".golden.bin"); }
fs::path adapter_dir() { return soft_dir() / kCase / "adapter"; }

}  // namespace

TEST_SUITE("train") {

TEST_CASE("prefix tuning: PEFT's adapter_config.json round-trips; the planner counts the prefix; flags checked") {
  model::AdapterFile file = model::load_adapter_config(adapter_dir());
  CHECK(file.settings.peft_type == spec::PeftType::prefix_tuning);
  CHECK(file.settings.prefix_tokens == 3);
  CHECK(file.settings.targets.empty());
  const spec::ModelShape shape = model::model_shape(model::load_model_config(base_folder()));
  nlohmann::json ours = model::peft_prefix_tuning_config(shape, file.settings, "tests/data/hf/llama3");
  nlohmann::json theirs = nlohmann::json::parse(read_text_file(adapter_dir() / "adapter_config.json"));
  theirs.erase("peft_version");
  CHECK(ours == theirs);
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::prefix_tuning;
  settings.target_modules.clear();
  settings.prefix_tokens = 3;
  plan::MemoryPlan plan = plan::make_plan(shape, settings);
  CHECK(plan.parameters.trainable == 3 * model::prefix_width(shape));
  CHECK(plan.contains("grad.prefix.key_values"));
  CHECK(plan.contains("adam_v.prefix.key_values"));
  CHECK(plan.find("prefix.k").bytes == settings.batch * (settings.seq_len + 3) * shape.kv_heads * shape.head_dim * 4);
  train::TrainConfig config;
  config.model = "m";
  config.data = "d.jsonl";
  config.output_dir = "out";
  config.peft_type = spec::PeftType::prefix_tuning;
  CHECK_NOTHROW(train::validate(config));
  config.num_virtual_tokens = 0;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("out of range"), UserError);
  config.num_virtual_tokens = 8;
  config.packing = true;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("--packing"), UserError);
  config.packing = false;  // --prefix-projection (test_model_prefix_projection.cpp): its flags
  config.prefix_projection = true;
  CHECK_NOTHROW(train::validate(config));
  config.encoder_hidden_size = -1;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("out of range"), UserError);
  config.encoder_hidden_size = 16;
  config.adapter = "earlier";
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("--adapter"), UserError);
  config.adapter.clear();
  config.peft_type = spec::PeftType::lora;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("goes with --peft-type prefix_tuning"), UserError);
}

TEST_CASE("prefix tuning: logits, loss, d embeddings and the prefix's gradient match PEFT (fp32, checkpointed, NF4)") {
  test::check_fp32_and_nf4_variants(kCase, golden_path(), base_folder(), adapter_dir());
}

TEST_CASE("prefix tuning: 20 AdamW steps match PEFT's trajectory (and write the adapter it loads back)") {
  test::check_trajectory_and_write(kCase, test::GoldenFile(golden_path()), base_folder(), adapter_dir(),
                                   soft_dir() / "vktune" / kCase);
}

TEST_CASE("prefix tuning: the reference loaded the adapter vktune writes to its logits; export refuses it") {
  auto report = nlohmann::json::parse(read_text_file(soft_dir() / "peft_load_check.json"));
  test::check_peft_load(report, kCase, test::GoldenFile(golden_path()), base_folder(), soft_dir() / "vktune" / kCase);
  merge::ExportOptions options;
  options.model = base_folder();
  options.adapter = adapter_dir();
  options.output = test::temp_dir("prefix-export");
  options.show_progress = false;
  CHECK_THROWS_WITH_AS(merge::export_merged(test::context(), options), doctest::Contains("cannot be merged"),
                       UserError);
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

TEST_CASE("train: prefix tuning on a tiny model, the loss falls; evaluate and generate read the prefix") {
  const fs::path root = test::binary_dir() / "test-output" / "e2e";
  train::TrainConfig config = test::tiny_lora_config(root, "e2e-prefix-tuning");
  config.peft_type = spec::PeftType::prefix_tuning;
  config.num_virtual_tokens = 4;
  config.max_steps = 20;
  config.learning_rate = 3e-2;
  train::TrainSummary summary = train::train(config);
  CHECK(summary.plan.parameters.trainable == 4 * model::prefix_width(summary.plan.shape));
  auto losses = test::logged_losses(config.output_dir);
  REQUIRE(losses.size() == 20);
  MESSAGE("prefix tuning loss " << losses.front() << " -> " << losses.back());
  CHECK(losses.back() < losses.front());
  CHECK(model::load_adapter_config(config.output_dir).settings.prefix_tokens == 4);
  train::EvalOptions eval;
  train::EvalResult plain = train::evaluate_model(test::context(), config.model, config.data, eval);
  eval.adapter = config.output_dir;
  train::EvalResult adapted = train::evaluate_model(test::context(), config.model, config.data, eval);
  MESSAGE("prefix tuning: eval loss base " << plain.loss << ", with the prefix " << adapted.loss);
  CHECK(adapted.loss < plain.loss);
  model::GeneratorOptions generate;
  generate.model = config.model;
  generate.adapter = fs::path(config.output_dir);
  generate.max_tokens = 16;
  generate.prefill_rows = 2;
  model::Generator generator(test::context(), generate);
  model::SamplingOptions sampling;
  sampling.max_new_tokens = 4;
  CHECK(generator.generate({1, 3, 17}, sampling).size() <= 4);
}

}  // TEST_SUITE
