// PEFT's P-tuning (--peft-type p_tuning, issue 17) against PEFT 0.21.2 itself
// (tests/reference/soft_prompt_golden.py, case ptuning_mlp; data in tests/data/soft_prompt/): 5 virtual
// tokens on tests/data/hf/llama3 (hidden 32) made by PEFT's MLP encoder (hidden 24). PEFT's adapter
// holds the encoder's output only, so the encoder's initial parameters come from the golden file
// (init.*). Bounds, those of model_hf: logits max-abs <= 1e-4, loss relative <= 1e-5, every encoder
// gradient and d loss/d inputs_embeds relative <= 1e-3, in fp32 (and checkpointed) and over an NF4
// (+ double quant) base; 20 AdamW steps within 1e-4 relative; the adapter vktune writes loads in PEFT
// with the same logits (peft_load_check.json). Case ptuning_lstm: the same with PEFT's LSTM encoder
// (bidirectional, 2 layers, hidden 12, then Linear(24, 24)-ReLU-Linear(24, 32)), same bounds.
#include <doctest/doctest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/export.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/p_tuning.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/config.hpp"
#include "engine/train/soft_prompt_run.hpp"
#include "tests/golden_run.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const std::string kCase = "ptuning_mlp";
const std::string kLstmCase = "ptuning_lstm";  // --encoder-reparameterization-type LSTM (2 layers, hidden 12)
const std::vector<std::string> kCases = {kCase, kLstmCase};

fs::path soft_dir() { return test::source_dir() / "tests/data/soft_prompt"; }
fs::path base_folder() { return test::source_dir() / "tests/data/hf/llama3"; }
fs::path golden_path(const std::string& name = kCase) { return soft_dir() / (name + ".golden.bin"); }
fs::path adapter_dir(const std::string& name = kCase) { return soft_dir() / name / "adapter"; }

// PEFT's adapter_config.json of case `name` reads back, and vktune writes it key for key.
model::AdapterFile check_config_round_trip(const std::string& name, const spec::ModelShape& shape) {
  model::AdapterFile file = model::load_adapter_config(adapter_dir(name));
  CHECK(file.settings.peft_type == spec::PeftType::p_tuning);
  CHECK(file.settings.virtual_tokens == 5);
  CHECK_FALSE(file.settings.train_encoder);  // the file holds the encoder's output only
  nlohmann::json peft = nlohmann::json::parse(read_text_file(adapter_dir(name) / "adapter_config.json"));
  nlohmann::json ours = model::peft_p_tuning_config(shape, file.settings, "tests/data/hf/llama3");
  peft.erase("peft_version");
  CHECK(ours == peft);
  return file;
}

// A training plan of 5 virtual tokens made by an encoder of hidden size `hidden` (LSTM: `lstm_layers`).
plan::MemoryPlan p_tuning_plan(const spec::ModelShape& shape, uint64_t hidden, uint32_t lstm_layers) {
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::p_tuning;
  settings.target_modules.clear();
  settings.virtual_tokens = 5;
  settings.prompt_encoder_hidden = hidden;
  settings.prompt_encoder_lstm_layers = lstm_layers;
  return plan::make_plan(shape, settings);
}

// The encoder on PEFT's initial parameters (case `name`) gives PEFT's saved prompt.
void check_encoder_output(const std::string& name, const spec::ModelShape& shape, double max_abs) {
  test::GoldenFile golden(golden_path(name));
  test::GoldenBatch batch = test::golden_batch(golden);
  test::AdapterSession opened =
      test::open_adapter_session(base_folder(), adapter_dir(name), batch, test::with_golden_encoder(golden));
  test::context().run([&](vk::Recorder& r) { opened.session->transformer->record_prompt_encoder(r); });
  std::vector<float> prompt(5 * shape.hidden);
  test::context().download(opened.session->buffers->buffer("prompt_embeddings"), prompt.data());
  test::check_close(prompt, golden["init.prompt_embeddings"].floats(), 1e-10, max_abs, name + " encoder output");
}

}  // namespace

TEST_SUITE("train") {

TEST_CASE("p-tuning: --peft-type p_tuning's flags are checked") {
  train::TrainConfig config;
  config.model = "m";
  config.data = "d.jsonl";
  config.output_dir = "out";
  config.peft_type = spec::PeftType::p_tuning;
  CHECK_NOTHROW(train::validate(config));
  config.encoder_reparameterization_type = "LSTM";
  CHECK_NOTHROW(train::validate(config));
  CHECK(train::prompt_encoder_lstm_layers(config) == 2);
  config.encoder_dropout = 0.1;  // torch's dropout between the 2 layers (test_model_p_tuning_dropout.cpp)
  CHECK_NOTHROW(train::validate(config));
  config.encoder_dropout = 1;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("[0, 1)"), UserError);
  config.encoder_dropout = 0;
  config.encoder_num_layers = 2;
  config.encoder_reparameterization_type = "GRU";
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("is unknown"), UserError);
  config.encoder_reparameterization_type = "MLP";
  config.encoder_hidden_size = -1;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("out of range"), UserError);
  config.encoder_hidden_size = 16;
  config.prompt_tuning_init = "text";
  config.prompt_tuning_init_text = "the";
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("does not go with --peft-type p_tuning"), UserError);
  config.prompt_tuning_init = "random";
  config.packing = true;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("--packing"), UserError);
}

}  // TEST_SUITE

TEST_SUITE("model_hf") {

TEST_CASE(
    "p-tuning: PEFT's config reads back and is written key for key; the plan counts the encoder; "
    "its output is PEFT's prompt") {
  spec::ModelShape shape = model::model_shape(model::load_model_config(base_folder()));
  model::AdapterFile file = check_config_round_trip(kCase, shape);
  CHECK(file.settings.encoder_hidden == 24);
  CHECK(file.settings.encoder_type == "MLP");
  // The planner: the encoder's parameters train (N·D + D·H + H + H·H + H + H·D + D), not the prompt.
  plan::MemoryPlan plan = p_tuning_plan(shape, 24, 0);
  CHECK(plan.parameters.trainable == 5 * 32 + 32 * 24 + 24 + 24 * 24 + 24 + 24 * 32 + 32);
  CHECK(plan.contains("grad.prompt_encoder.mlp_head.2.weight"));
  CHECK(plan.contains("adam_v.prompt_encoder.embedding.weight"));
  CHECK(plan.contains("prompt_embeddings"));
  CHECK_FALSE(plan.contains("grad.prompt_embeddings"));
  spec::RunSettings inference = plan.settings;  // inference: the prompt as saved, no encoder
  inference.training = false;
  inference.with_adapter = true;
  CHECK_FALSE(plan::make_plan(shape, inference).contains("prompt_encoder.embedding.weight"));
  // Three fp32 products of inner size <= 32 in another summation order than torch's: ~1e-6.
  check_encoder_output(kCase, shape, 1e-5);
}

TEST_CASE(
    "p-tuning LSTM: PEFT's config reads back key for key; the plan counts the LSTM; its output is PEFT's prompt") {
  spec::ModelShape shape = model::model_shape(model::load_model_config(base_folder()));
  model::AdapterFile file = check_config_round_trip(kLstmCase, shape);
  CHECK(file.settings.encoder_type == "LSTM");
  CHECK(file.settings.encoder_layers == 2);
  CHECK(file.settings.encoder_hidden == 12);
  // The planner: embedding N·D; per layer and direction W_ih (4H, in) + W_hh (4H, H) + two (4H)
  // biases, in = D then 2H; the head (2H, 2H) + 2H + (D, 2H) + D. N 5, D 32, H 12.
  plan::MemoryPlan plan = p_tuning_plan(shape, 12, 2);
  const uint64_t layer0 = 48 * 32 + 48 * 12 + 2 * 48, layer1 = 48 * 24 + 48 * 12 + 2 * 48;
  CHECK(plan.parameters.trainable == 5 * 32 + 2 * (layer0 + layer1) + 24 * 24 + 24 + 32 * 24 + 32);
  CHECK(plan.contains("grad.prompt_encoder.lstm_head.weight_hh_l1_reverse"));
  CHECK(plan.contains("adam_v.prompt_encoder.lstm_head.bias_ih_l0"));
  CHECK(plan.contains("prompt_encoder.lstm.gates.l1_reverse"));
  CHECK(plan.contains("prompt_encoder.lstm.grad_out_b"));
  CHECK_FALSE(plan.contains("prompt_encoder.mlp_head.4.weight"));
  // fp32 products of inner size <= 32 and 10 recurrent steps, another order than torch's: ~1e-6.
  check_encoder_output(kLstmCase, shape, 1e-5);
}

TEST_CASE(
    "p-tuning (MLP, LSTM): logits, loss, d inputs_embeds and every encoder gradient match PEFT (fp32, checkpointed, "
    "NF4)") {
  for (const std::string& name : kCases) {  // LSTM: backpropagation through time, both directions, both layers
    CAPTURE(name);
    test::GoldenFile golden(golden_path(name));
    test::check_fp32_and_nf4_variants(name, golden_path(name), base_folder(), adapter_dir(name),
                                      test::with_golden_encoder(golden));
  }
}

TEST_CASE("p-tuning (MLP, LSTM): 20 AdamW steps match PEFT's trajectory (and write the adapter it loads back)") {
  for (const std::string& name : kCases) {
    CAPTURE(name);
    test::GoldenFile golden(golden_path(name));
    test::check_trajectory_and_write(name, golden, base_folder(), adapter_dir(name), soft_dir() / "vktune" / name,
                                     test::with_golden_encoder(golden));
  }
}

TEST_CASE("p-tuning (MLP, LSTM): the reference loaded the adapter vktune writes (this format version) to its logits") {
  auto report = nlohmann::json::parse(read_text_file(soft_dir() / "peft_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  for (const std::string& name : kCases)
    test::check_peft_load(report, name, test::GoldenFile(golden_path(name)), base_folder(),
                          soft_dir() / "vktune" / name);
}

TEST_CASE("p-tuning: export refuses to merge its prompt") {
  merge::ExportOptions options;
  options.model = base_folder();
  options.adapter = adapter_dir();
  options.output = test::temp_dir("p-tuning-export");
  options.show_progress = false;
  CHECK_THROWS_WITH_AS(merge::export_merged(test::context(), options), doctest::Contains("cannot be merged"),
                       UserError);
}

}  // TEST_SUITE
