// PEFT's soft prompts (--peft-type prompt_tuning, issue 17) against PEFT 0.21.2 itself
// (tests/reference/soft_prompt_golden.py; data in tests/data/soft_prompt/): 5 virtual tokens on
// tests/data/hf/llama3 with PEFT's TEXT init, the batch in vktune's expanded layout (the prompt's cells
// first, positions 0 .. N+T-1 as transformers numbers PEFT's concatenated inputs_embeds).
// Bounds, those of model_hf: logits max-abs <= 1e-4 over the real rows (virtual ones included), loss
// relative <= 1e-5, the prompt's gradient and d loss/d inputs_embeds relative <= 1e-3, in fp32 (and
// checkpointed) and over an NF4 (+ double quant) base; 20 AdamW steps within 1e-4 relative. The
// adapter vktune writes loads in PEFT with the same logits (peft_load_check.json). Export refuses it.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/export.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/soft_prompt.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/config.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const char* const kCases[] = {"prompt_llama"};

fs::path soft_dir() { return test::source_dir() / "tests/data/soft_prompt"; }
fs::path base_folder() { return test::source_dir() / "tests/data/hf/llama3"; }
fs::path golden_path(const std::string& name) { return soft_dir() / (name + ".golden.bin"); }
fs::path adapter_dir(const std::string& name) { return soft_dir() / name / "adapter"; }

}  // namespace

TEST_SUITE("train") {

TEST_CASE("soft prompt: the batcher leaves the first N cells of every row to the prompt") {
  train::BatcherSettings settings;
  settings.batch = 2;
  settings.seq_len = 3 + 4;
  settings.virtual_tokens = 3;
  settings.shuffle = false;
  settings.pad_id = 9;
  train::Batcher batcher({{{1, 5, 6, 7}, {0.5f, 1, 1, 1}}, {{1, 8}, {0.5f, 1}}}, settings);
  train::MicroBatch batch = batcher.next();
  CHECK(batch.ids == std::vector<uint32_t>{9, 9, 9, 1, 5, 6, 7, 9, 9, 9, 1, 8, 9, 9});
  CHECK(batch.positions == std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6});
  // The last virtual cell predicts the first token with its weight, as PEFT's labels = input_ids.
  CHECK(batch.targets[2] == 1);
  CHECK(batch.weights == std::vector<float>{0, 0, 0.5f, 1, 1, 1, 0, 0, 0, 0.5f, 1, 0, 0, 0});
  CHECK(batch.weight_sum == 5.0);
  CHECK(batch.segments[0] == 0);
  CHECK(batch.segments[12] == 0xffffffffu);
}

TEST_CASE("soft prompt: --peft-type prompt_tuning's flags are checked") {
  train::TrainConfig config;
  config.model = "m";
  config.data = "d.jsonl";
  config.output_dir = "out";
  config.peft_type = spec::PeftType::prompt_tuning;
  CHECK_NOTHROW(train::validate(config));
  config.prompt_tuning_init = "text";
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("--prompt-tuning-init-text"), UserError);
  config.prompt_tuning_init = "sample";
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("is unknown"), UserError);
  config.prompt_tuning_init = "random";
  config.num_virtual_tokens = 0;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("out of range"), UserError);
  config.num_virtual_tokens = 8;
  config.packing = true;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("--packing"), UserError);
}

}  // TEST_SUITE

TEST_SUITE("model_hf") {

TEST_CASE("soft prompt: PEFT's config reads back, its TEXT init gives PEFT's embeddings, the plan counts the prompt") {
  model::AdapterFile file = model::load_adapter_config(adapter_dir("prompt_llama"));
  CHECK(file.settings.peft_type == spec::PeftType::prompt_tuning);
  CHECK(file.settings.virtual_tokens == 5);
  CHECK(file.settings.targets.empty());
  CHECK(file.settings.prompt_init == "TEXT");
  spec::ModelShape shape = model::model_shape(model::load_model_config(base_folder()));
  // What vktune writes is PEFT's config, key for key.
  nlohmann::json peft = nlohmann::json::parse(read_text_file(adapter_dir("prompt_llama") / "adapter_config.json"));
  nlohmann::json ours = model::peft_prompt_tuning_config(shape, file.settings, "tests/data/hf/llama3");
  peft.erase("peft_version");
  CHECK(ours == peft);
  // PEFT's TEXT init: the text's ids repeated to N, their embedding rows.
  test::GoldenFile golden(golden_path("prompt_llama"));
  std::vector<int64_t> text = golden["init.ids"].ints();
  std::vector<uint32_t> text_ids(text.begin(), text.end());
  std::vector<uint32_t> ids = model::prompt_init_ids(text_ids, 5);
  CHECK(ids == std::vector<uint32_t>{1, 17, 42, 1, 17});
  CHECK(model::prompt_init_ids(text_ids, 2) == std::vector<uint32_t>{1, 17});
  test::GoldenBatch batch = test::golden_batch(golden);
  test::AdapterSession opened = test::open_adapter_session(base_folder(), adapter_dir("prompt_llama"), batch);
  test::context().upload(opened.session->buffers->buffer("input.ids"), ids.data(), 0, ids.size() * 4);
  test::context().run([&](vk::Recorder& r) { opened.session->transformer->record_prompt_init(r); });
  std::vector<float> initial(5 * shape.hidden);
  test::context().download(opened.session->buffers->buffer("prompt_embeddings"), initial.data());
  CHECK(initial == golden["init.prompt_embeddings"].floats());  // a gather of fp32 rows: exact
  // RANDOM init: torch.nn.Embedding's N(0, 1) law (another generator), fixed by the seed.
  std::vector<float> random = model::prompt_random_init(64, 64, 3);
  double sum = 0, squares = 0;
  for (float v : random) sum += v, squares += double(v) * v;
  const double mean = sum / double(random.size()), std = std::sqrt(squares / double(random.size()) - mean * mean);
  CHECK(std::fabs(mean) < 0.05);
  CHECK(std::fabs(std - 1.0) < 0.05);
  CHECK(model::prompt_random_init(64, 64, 3) == random);
  CHECK(model::prompt_random_init(64, 64, 4) != random);
  // The planner: N x hidden trained values, and rows of seq_len (virtual cells included).
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::prompt_tuning;
  settings.target_modules.clear();
  settings.virtual_tokens = 5;
  plan::MemoryPlan plan = plan::make_plan(shape, settings);
  CHECK(plan.parameters.trainable == 5 * shape.hidden);
  CHECK(plan.contains("grad.prompt_embeddings"));
  CHECK(plan.find("input.prompt_slots").bytes == settings.batch * settings.seq_len * 4);
}

TEST_CASE("soft prompt: logits, loss, d inputs_embeds and the prompt's gradient match PEFT (fp32, checkpointed, NF4)") {
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::check_fp32_and_nf4_variants(name, golden_path(name), base_folder(), adapter_dir(name));
  }
}

TEST_CASE("soft prompt: 20 AdamW steps match PEFT's trajectory (and write the adapter it loads back)") {
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::GoldenFile golden(golden_path(name));
    test::GoldenBatch batch = test::golden_batch(golden);
    test::AdapterSession opened = test::open_adapter_session(base_folder(), adapter_dir(name), batch);
    test::TrajectoryErrors errors = test::check_adamw_trajectory(golden, batch, *opened.session);
    MESSAGE(std::string(name) << ": 20 steps, worst relative: loss " << errors.loss << ", grad norm "
                              << errors.grad_norm);
    if (std::getenv("VKT_WRITE_SOFT_PROMPT"))  // the trained adapter and its logits, for --check-vktune
      test::write_adapter_and_logits(golden, *opened.session, opened.lora, base_folder(), soft_dir() / "vktune" / name);
  }
}

TEST_CASE("soft prompt: the reference loaded the adapters vktune writes (this format version) to its logits") {
  auto report = nlohmann::json::parse(read_text_file(soft_dir() / "peft_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::check_peft_load(report, name, test::GoldenFile(golden_path(name)), base_folder(),
                          soft_dir() / "vktune" / name);
  }
}

TEST_CASE("soft prompt: export refuses to merge a prompt (it changes the input, not the weights)") {
  merge::ExportOptions options;
  options.model = base_folder();
  options.adapter = adapter_dir("prompt_llama");
  options.output = test::temp_dir("soft-prompt-export");
  options.show_progress = false;
  CHECK_THROWS_WITH_AS(merge::export_merged(test::context(), options), doctest::Contains("cannot be merged"),
                       UserError);
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

TEST_CASE("train: prompt tuning on a tiny model, the loss falls; evaluate and generate read the prompt") {
  const fs::path root = test::binary_dir() / "test-output" / "e2e";
  train::TrainConfig config = test::tiny_lora_config(root, "e2e-prompt-tuning");
  config.peft_type = spec::PeftType::prompt_tuning;
  config.num_virtual_tokens = 4;
  config.prompt_tuning_init = "text";
  config.prompt_tuning_init_text = "the";
  config.max_steps = 30;
  config.learning_rate = 3e-2;
  train::TrainSummary summary = train::train(config);
  CHECK(summary.plan.parameters.trainable == 4 * summary.plan.shape.hidden);
  auto losses = test::logged_losses(config.output_dir);
  REQUIRE(losses.size() == 30);
  MESSAGE("prompt tuning loss " << losses.front() << " -> " << losses.back());
  CHECK(losses.back() < losses.front());
  model::AdapterFile file = model::load_adapter_config(config.output_dir);
  CHECK(file.settings.virtual_tokens == 4);
  CHECK(file.settings.prompt_init == "TEXT");
  train::EvalOptions eval;
  train::EvalResult plain = train::evaluate_model(test::context(), config.model, config.data, eval);
  eval.adapter = config.output_dir;
  train::EvalResult adapted = train::evaluate_model(test::context(), config.model, config.data, eval);
  MESSAGE("prompt tuning: eval loss base " << plain.loss << ", with the prompt " << adapted.loss);
  CHECK(adapted.loss < plain.loss);
  model::GeneratorOptions generate;
  generate.model = config.model;
  generate.adapter = fs::path(config.output_dir);
  generate.max_tokens = 16;
  generate.prefill_rows = 3;  // the prompt's 4 cells over two prefill blocks
  model::Generator generator(test::context(), generate);
  model::SamplingOptions sampling;
  sampling.max_new_tokens = 4;
  CHECK(generator.generate({1, 3, 17}, sampling).size() <= 4);
}

}  // TEST_SUITE
