// PEFT's P-tuning (--peft-type p_tuning, issue 17) against PEFT 0.21.2 itself
// (tests/reference/soft_prompt_golden.py, case ptuning_mlp; data in tests/data/soft_prompt/): 5 virtual
// tokens on tests/data/hf/llama3 (hidden 32) made by PEFT's MLP encoder (hidden 24). PEFT's adapter
// holds the encoder's output only, so the encoder's initial parameters come from the golden file
// (init.*). Bounds, those of model_hf: logits max-abs <= 1e-4, loss relative <= 1e-5, every encoder
// gradient and d loss/d inputs_embeds relative <= 1e-3, in fp32 (and checkpointed) and over an NF4
// (+ double quant) base; 20 AdamW steps within 1e-4 relative; the adapter vktune writes loads in PEFT
// with the same logits (peft_load_check.json).
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

fs::path soft_dir() { return test::source_dir() / "tests/data/soft_prompt"; }
fs::path base_folder() { return test::source_dir() / "tests/data/hf/llama3"; }
fs::path golden_path() { return soft_dir() / (kCase + ".golden.bin"); }
fs::path adapter_dir() { return soft_dir() / kCase / "adapter"; }

// The run trains the encoder, starting from PEFT's initial parameters (the golden's init.*).
test::SessionSetup with_peft_encoder(const test::GoldenFile& golden) {
  test::SessionSetup setup;
  setup.settings = [](model::LoraSettings& lora) { lora.train_encoder = true; };
  setup.weights = [&golden](model::ModelSession& session, const model::LoraSettings& lora) {
    for (const auto& tensor : model::prompt_encoder_tensors(session.plan.shape, lora))
      test::context().upload(session.buffers->buffer(tensor.buffer), golden["init." + tensor.buffer].floats().data());
  };
  return setup;
}

}  // namespace

TEST_SUITE("train") {

TEST_CASE("p-tuning: --peft-type p_tuning's flags are checked (LSTM's dropout between layers is refused)") {
  train::TrainConfig config;
  config.model = "m";
  config.data = "d.jsonl";
  config.output_dir = "out";
  config.peft_type = spec::PeftType::p_tuning;
  CHECK_NOTHROW(train::validate(config));
  config.encoder_reparameterization_type = "LSTM";
  CHECK_NOTHROW(train::validate(config));
  CHECK(train::prompt_encoder_lstm_layers(config) == 2);
  config.encoder_dropout = 0.1;  // torch's dropout between the 2 layers: not built
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("--encoder-dropout > 0 with the LSTM"), UserError);
  config.encoder_num_layers = 1;  // one layer: torch drops nothing
  CHECK_NOTHROW(train::validate(config));
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
  model::AdapterFile file = model::load_adapter_config(adapter_dir());
  CHECK(file.settings.peft_type == spec::PeftType::p_tuning);
  CHECK(file.settings.virtual_tokens == 5);
  CHECK(file.settings.encoder_hidden == 24);
  CHECK(file.settings.encoder_type == "MLP");
  CHECK_FALSE(file.settings.train_encoder);  // the file holds the encoder's output only
  spec::ModelShape shape = model::model_shape(model::load_model_config(base_folder()));
  nlohmann::json peft = nlohmann::json::parse(read_text_file(adapter_dir() / "adapter_config.json"));
  nlohmann::json ours = model::peft_p_tuning_config(shape, file.settings, "tests/data/hf/llama3");
  peft.erase("peft_version");
  CHECK(ours == peft);
  // The planner: the encoder's parameters train (N·D + D·H + H + H·H + H + H·D + D), not the prompt.
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::p_tuning;
  settings.target_modules.clear();
  settings.virtual_tokens = 5;
  settings.prompt_encoder_hidden = 24;
  plan::MemoryPlan plan = plan::make_plan(shape, settings);
  CHECK(plan.parameters.trainable == 5 * 32 + 32 * 24 + 24 + 24 * 24 + 24 + 24 * 32 + 32);
  CHECK(plan.contains("grad.prompt_encoder.mlp_head.2.weight"));
  CHECK(plan.contains("adam_v.prompt_encoder.embedding.weight"));
  CHECK(plan.contains("prompt_embeddings"));
  CHECK_FALSE(plan.contains("grad.prompt_embeddings"));
  settings.training = false;  // inference: the prompt as saved, no encoder
  settings.with_adapter = true;
  CHECK_FALSE(plan::make_plan(shape, settings).contains("prompt_encoder.embedding.weight"));
  // The encoder on PEFT's initial parameters gives PEFT's saved prompt.
  test::GoldenFile golden(golden_path());
  test::GoldenBatch batch = test::golden_batch(golden);
  test::AdapterSession opened =
      test::open_adapter_session(base_folder(), adapter_dir(), batch, with_peft_encoder(golden));
  test::context().run([&](vk::Recorder& r) { opened.session->transformer->record_prompt_encoder(r); });
  std::vector<float> prompt(5 * shape.hidden);
  test::context().download(opened.session->buffers->buffer("prompt_embeddings"), prompt.data());
  // Three fp32 products of inner size <= 32 in another summation order than torch's: ~1e-6.
  test::check_close(prompt, golden["init.prompt_embeddings"].floats(), 1e-10, 1e-5, "encoder output");
}

TEST_CASE("p-tuning: logits, loss, d inputs_embeds and every encoder gradient match PEFT (fp32, checkpointed, NF4)") {
  test::GoldenFile golden(golden_path());
  test::check_fp32_and_nf4_variants(kCase, golden_path(), base_folder(), adapter_dir(), with_peft_encoder(golden));
}

TEST_CASE("p-tuning: 20 AdamW steps match PEFT's trajectory (and write the adapter it loads back)") {
  test::GoldenFile golden(golden_path());
  test::GoldenBatch batch = test::golden_batch(golden);
  test::AdapterSession opened =
      test::open_adapter_session(base_folder(), adapter_dir(), batch, with_peft_encoder(golden));
  test::TrajectoryErrors errors = test::check_adamw_trajectory(golden, batch, *opened.session);
  MESSAGE(kCase << ": 20 steps, worst relative: loss " << errors.loss << ", grad norm " << errors.grad_norm);
  if (std::getenv("VKT_WRITE_SOFT_PROMPT"))  // the trained adapter and its logits, for --check-vktune
    test::write_adapter_and_logits(golden, *opened.session, opened.lora, base_folder(), soft_dir() / "vktune" / kCase);
}

TEST_CASE("p-tuning: the reference loaded the adapter vktune writes (this format version) to its logits") {
  auto report = nlohmann::json::parse(read_text_file(soft_dir() / "peft_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  test::check_peft_load(report, kCase, test::GoldenFile(golden_path()), base_folder(), soft_dir() / "vktune" / kCase);
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
