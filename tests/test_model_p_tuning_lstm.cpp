// PEFT's P-tuning with the LSTM encoder (--encoder-reparameterization-type LSTM, issue 17) against
// PEFT 0.21.2 itself (tests/reference/soft_prompt_golden.py, case ptuning_lstm; data in
// tests/data/soft_prompt/): 5 virtual tokens on tests/data/hf/llama3 (hidden 32) made by PEFT's
// bidirectional 2-layer nn.LSTM (hidden 12) and its Linear(24, 24)-ReLU-Linear(24, 32) head. PEFT's
// adapter holds the encoder's output only, so the encoder's initial parameters come from the golden
// file (init.*). Bounds, those of ptuning_mlp (model_hf's): logits max-abs <= 1e-4, loss relative <=
// 1e-5, every encoder gradient (backpropagation through time, both directions, both layers) and
// d loss/d inputs_embeds relative <= 1e-3, in fp32 (and checkpointed) and over an NF4 (+ double
// quant) base; 20 AdamW steps within 1e-4 relative; the adapter vktune writes loads in PEFT with the
// same logits (peft_load_check.json).
#include <doctest/doctest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/p_tuning.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/soft_prompt_run.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_run.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"
#include "tests/tiny_runs.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const std::string kLstmCase = "ptuning_lstm";

fs::path lstm_soft_dir() { return test::source_dir() / "tests/data/soft_prompt"; }
fs::path lstm_base_folder() { return test::source_dir() / "tests/data/hf/llama3"; }
fs::path lstm_golden_path() { return lstm_soft_dir() / (kLstmCase + ".golden.bin"); }
fs::path lstm_adapter_dir() { return lstm_soft_dir() / kLstmCase / "adapter"; }

// The run trains the LSTM encoder from PEFT's initial parameters (the golden's init.*).
test::SessionSetup with_peft_lstm(const test::GoldenFile& golden) {
  test::SessionSetup setup;
  setup.settings = [](model::LoraSettings& lora) { lora.train_encoder = true; };
  setup.weights = [&golden](model::ModelSession& session, const model::LoraSettings& lora) {
    for (const auto& tensor : model::prompt_encoder_tensors(session.plan.shape, lora))
      test::context().upload(session.buffers->buffer(tensor.buffer), golden["init." + tensor.buffer].floats().data());
  };
  return setup;
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE(
    "p-tuning LSTM: PEFT's config reads back key for key; the plan counts the LSTM; its output is PEFT's prompt") {
  model::AdapterFile file = model::load_adapter_config(lstm_adapter_dir());
  CHECK(file.settings.encoder_type == "LSTM");
  CHECK(file.settings.encoder_layers == 2);
  CHECK(file.settings.encoder_hidden == 12);
  spec::ModelShape shape = model::model_shape(model::load_model_config(lstm_base_folder()));
  nlohmann::json peft = nlohmann::json::parse(read_text_file(lstm_adapter_dir() / "adapter_config.json"));
  nlohmann::json ours = model::peft_p_tuning_config(shape, file.settings, "tests/data/hf/llama3");
  peft.erase("peft_version");
  CHECK(ours == peft);
  // The planner: embedding N·D; per layer and direction W_ih (4H, in) + W_hh (4H, H) + two (4H)
  // biases, in = D then 2H; the head (2H, 2H) + 2H + (D, 2H) + D. N 5, D 32, H 12.
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::p_tuning;
  settings.target_modules.clear();
  settings.virtual_tokens = 5;
  settings.prompt_encoder_hidden = 12;
  settings.prompt_encoder_lstm_layers = 2;
  plan::MemoryPlan plan = plan::make_plan(shape, settings);
  const uint64_t layer0 = 48 * 32 + 48 * 12 + 2 * 48, layer1 = 48 * 24 + 48 * 12 + 2 * 48;
  CHECK(plan.parameters.trainable == 5 * 32 + 2 * (layer0 + layer1) + 24 * 24 + 24 + 32 * 24 + 32);
  CHECK(plan.contains("grad.prompt_encoder.lstm_head.weight_hh_l1_reverse"));
  CHECK(plan.contains("adam_v.prompt_encoder.lstm_head.bias_ih_l0"));
  CHECK(plan.contains("prompt_encoder.lstm.gates.l1_reverse"));
  CHECK(plan.contains("prompt_encoder.lstm.grad_out_b"));
  CHECK_FALSE(plan.contains("prompt_encoder.mlp_head.4.weight"));
  // The encoder on PEFT's initial parameters gives PEFT's saved prompt.
  test::GoldenFile golden(lstm_golden_path());
  test::GoldenBatch batch = test::golden_batch(golden);
  test::AdapterSession opened =
      test::open_adapter_session(lstm_base_folder(), lstm_adapter_dir(), batch, with_peft_lstm(golden));
  test::context().run([&](vk::Recorder& r) { opened.session->transformer->record_prompt_encoder(r); });
  std::vector<float> prompt(5 * shape.hidden);
  test::context().download(opened.session->buffers->buffer("prompt_embeddings"), prompt.data());
  // fp32 products of inner size <= 32 and 10 recurrent steps, another order than torch's: ~1e-6.
  test::check_close(prompt, golden["init.prompt_embeddings"].floats(), 1e-10, 1e-5, "LSTM encoder output");
}

TEST_CASE(
    "p-tuning LSTM: logits, loss, d inputs_embeds and every encoder gradient match PEFT (fp32, checkpointed, NF4)") {
  test::GoldenFile golden(lstm_golden_path());
  test::check_fp32_and_nf4_variants(kLstmCase, lstm_golden_path(), lstm_base_folder(), lstm_adapter_dir(),
                                    with_peft_lstm(golden));
}

TEST_CASE("p-tuning LSTM: 20 AdamW steps match PEFT's trajectory (and write the adapter it loads back)") {
  test::GoldenFile golden(lstm_golden_path());
  test::GoldenBatch batch = test::golden_batch(golden);
  test::AdapterSession opened =
      test::open_adapter_session(lstm_base_folder(), lstm_adapter_dir(), batch, with_peft_lstm(golden));
  test::TrajectoryErrors errors = test::check_adamw_trajectory(golden, batch, *opened.session);
  MESSAGE(kLstmCase << ": 20 steps, worst relative: loss " << errors.loss << ", grad norm " << errors.grad_norm);
  if (std::getenv("VKT_WRITE_SOFT_PROMPT"))  // the trained adapter and its logits, for --check-vktune
    test::write_adapter_and_logits(golden, *opened.session, opened.lora, lstm_base_folder(),
                                   lstm_soft_dir() / "vktune" / kLstmCase);
}

TEST_CASE("p-tuning LSTM: the reference loaded the adapter vktune writes (this format version) to its logits") {
  auto report = nlohmann::json::parse(read_text_file(lstm_soft_dir() / "peft_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  test::check_peft_load(report, kLstmCase, test::GoldenFile(lstm_golden_path()), lstm_base_folder(),
                        lstm_soft_dir() / "vktune" / kLstmCase);
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

TEST_CASE("train: P-tuning's LSTM encoder resumes bit for bit, its checkpoint under PEFT's names") {
  train::TrainConfig full =
      test::tiny_lora_config(test::binary_dir() / "test-output" / "e2e", "e2e-resume-p-tuning-lstm-reference");
  full.peft_type = spec::PeftType::p_tuning;
  full.encoder_reparameterization_type = "LSTM";
  full.num_virtual_tokens = 3;
  full.encoder_hidden_size = 8;
  full.max_steps = 3;              // learning is shown by the golden trajectory (ptuning_lstm)
  test::check_resume(full, 2, 2);  // the LSTM's parameters and AdamW states are in checkpoint-2
  const fs::path checkpoint =      // check_resume's interrupted run (test::temp_dir(<name>-crashed))
      test::binary_dir() / "test-output" / (fs::path(full.output_dir).filename().string() + "-crashed") /
      "checkpoint-2";
  model::SafetensorsFile encoder(checkpoint / train::prompt_encoder_file);
  CHECK(encoder.find("prompt_encoder.lstm_head.weight_ih_l1_reverse"));
  CHECK(encoder.find("prompt_encoder.mlp_head.2.bias"));
  nlohmann::json adapter = nlohmann::json::parse(read_text_file(fs::path(full.output_dir) / "adapter_config.json"));
  CHECK(adapter["encoder_reparameterization_type"] == "LSTM");
  model::SafetensorsFile saved(fs::path(full.output_dir) / "adapter_model.safetensors");
  REQUIRE(saved.find("prompt_embeddings"));
  CHECK(saved.find("prompt_embeddings")->shape == std::vector<uint64_t>{3, 32});
}

}  // TEST_SUITE
