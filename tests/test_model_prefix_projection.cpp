// PEFT's prefix tuning with prefix_projection (--peft-type prefix_tuning --prefix-projection, issue 17)
// against PEFT 0.21.2 itself (tests/reference/soft_prompt_golden.py, case prefix_projection; data in
// tests/data/soft_prompt/): 3 prefix rows per layer on tests/data/hf/llama3 (GQA: token_dim 16) made by
// PEFT's PrefixEncoder, Embedding(3, 16) -> Linear(16, 24) -> Tanh -> Linear(24, 2*2*16). PEFT's adapter
// holds the encoder's output only, so the encoder's initial parameters come from the golden file
// (init.*). Bounds, those of model_hf: logits max-abs <= 1e-4, loss relative <= 1e-5, every encoder
// gradient and d loss/d embedding output relative <= 1e-3, in fp32 (and checkpointed) and over an NF4
// (+ double quant) base; 20 AdamW steps within 1e-4 relative; the adapter vktune writes loads in PEFT
// with the same logits (prefix_projection_load_check.json). Also: generate with a prefix adapter gives
// the full forward's next-token logits.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/prefix_tuning.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/config.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_run.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"
#include "tests/tiny_runs.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const std::string kCase = "prefix_projection";

fs::path soft_dir() { return test::source_dir() / "tests/data/soft_prompt"; }
fs::path base_folder() { return test::source_dir() / "tests/data/hf/llama3"; }
fs::path golden_path() { return soft_dir() / (kCase + ".golden.bin"); }
fs::path adapter_dir() { return soft_dir() / kCase / "adapter"; }

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE(
    "prefix projection: PEFT's config reads back and is written key for key; the plan counts the encoder; "
    "its output is PEFT's prefix") {
  model::AdapterFile file = model::load_adapter_config(adapter_dir());
  CHECK(file.settings.peft_type == spec::PeftType::prefix_tuning);
  CHECK(file.settings.prefix_tokens == 3);
  CHECK(file.settings.prefix_projection);
  CHECK(file.settings.encoder_hidden == 24);
  CHECK_FALSE(file.settings.train_encoder);  // the file holds the encoder's output only
  const spec::ModelShape shape = model::model_shape(model::load_model_config(base_folder()));
  nlohmann::json ours = model::peft_prefix_tuning_config(shape, file.settings, "tests/data/hf/llama3");
  nlohmann::json theirs = nlohmann::json::parse(read_text_file(adapter_dir() / "adapter_config.json"));
  theirs.erase("peft_version");
  CHECK(ours == theirs);
  // The planner: the encoder trains (P·T + H·T + H + W·H + W, W = layers·2·T), not the prefix.
  // The run settings the trainer's session derives from them while training the encoder.
  model::LoraSettings training = file.settings;
  training.train_encoder = true;
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  model::apply_adapter_settings(settings, training);
  CHECK(settings.prefix_projection_hidden == 24);
  CHECK(settings.prompt_encoder_hidden == 0);
  plan::MemoryPlan plan = plan::make_plan(shape, settings);
  CHECK(plan.parameters.trainable == 3 * 16 + 24 * 16 + 24 + 64 * 24 + 64);
  for (const char* name : {"grad.prefix_encoder.transform.2.weight", "adam_v.prefix_encoder.embedding.weight",
                           "adam_m.prefix_encoder.transform.0.bias", "prefix.key_values", "prefix_encoder.hidden",
                           "prefix_encoder.grad_output"})
    CHECK_MESSAGE(plan.contains(name), name);
  CHECK_FALSE(plan.contains("grad.prefix.key_values"));
  CHECK(plan.find("prefix_encoder.grad_output").bytes == 3 * 64 * 4);
  settings.training = false;  // inference: the prefix as saved, no encoder
  settings.with_adapter = true;
  CHECK_FALSE(plan::make_plan(shape, settings).contains("prefix_encoder.embedding.weight"));
  // The encoder on PEFT's initial parameters gives PEFT's saved prefix.
  test::GoldenFile golden(golden_path());
  test::GoldenBatch batch = test::golden_batch(golden);
  test::AdapterSession opened =
      test::open_adapter_session(base_folder(), adapter_dir(), batch, test::with_golden_encoder(golden));
  test::context().run([&](vk::Recorder& r) { opened.session->transformer->record_prompt_encoder(r); });
  std::vector<float> prefix(3 * 64);
  test::context().download(opened.session->buffers->buffer("prefix.key_values"), prefix.data());
  // Two fp32 products of inner size <= 24 and a tanh, in another summation order than torch's: ~1e-6.
  test::check_close(prefix, golden["init.prompt_embeddings"].floats(), 1e-10, 1e-5, "encoder output");
}

TEST_CASE(
    "prefix projection: logits, loss, d embeddings and every encoder gradient match PEFT (fp32, checkpointed, "
    "NF4)") {
  test::GoldenFile golden(golden_path());
  test::check_fp32_and_nf4_variants(kCase, golden_path(), base_folder(), adapter_dir(),
                                    test::with_golden_encoder(golden));
}

TEST_CASE("prefix projection: 20 AdamW steps match PEFT's trajectory (and write the adapter it loads back)") {
  test::GoldenFile golden(golden_path());
  test::check_trajectory_and_write(kCase, golden, base_folder(), adapter_dir(), soft_dir() / "vktune" / kCase,
                                   test::with_golden_encoder(golden));
}

TEST_CASE("prefix projection: the reference loaded the adapter vktune writes (this format version) to its logits") {
  auto report = nlohmann::json::parse(read_text_file(soft_dir() / "prefix_projection_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  test::check_peft_load(report, kCase, test::GoldenFile(golden_path()), base_folder(), soft_dir() / "vktune" / kCase);
  model::AdapterFile written = model::load_adapter_config(soft_dir() / "vktune" / kCase / "adapter");
  CHECK(written.settings.prefix_projection);
  CHECK(written.settings.encoder_hidden == 24);
}

TEST_CASE(
    "prefix tuning: generate (prefix in the KV cache, prefill blocks, then a row per step) gives the full forward's "
    "next-token logits") {
  // vktune's trained prefix_projection adapter: for inference a plain prefix (PEFT's prompt_embeddings).
  const fs::path adapter = soft_dir() / "vktune" / kCase / "adapter";
  const std::vector<uint32_t> prompt = {5, 17, 42, 99, 7};
  auto generated_logits = [&](const fs::path& with_adapter, std::vector<uint32_t>* sequence) {
    model::GeneratorOptions options;
    options.model = base_folder();
    if (!with_adapter.empty()) options.adapter = with_adapter;
    options.max_tokens = 32;
    options.prefill_rows = 3;  // the prompt in two blocks, then one row per step
    model::Generator generator(test::context(), options);
    model::SamplingOptions sampling;
    sampling.max_new_tokens = 4;  // the last logits follow the prompt and the first 3 generated tokens
    std::vector<uint32_t> output = generator.generate(prompt, sampling);
    REQUIRE(output.size() == 4);
    if (sequence) *sequence = prompt, sequence->insert(sequence->end(), output.begin(), output.end() - 1);
    return generator.last_logits();
  };
  std::vector<uint32_t> sequence;
  const std::vector<float> decoded = generated_logits(adapter, &sequence);
  // The full forward (a training plan's record_logits, as the golden tests) of that sequence: its last row.
  test::GoldenBatch batch;
  batch.batch = 1;
  batch.seq_len = static_cast<uint32_t>(sequence.size());
  batch.ids = sequence;
  batch.targets.assign(sequence.size(), 0);
  batch.weights.assign(sequence.size(), 1.0f);
  batch.segments.assign(sequence.size(), 0);
  for (uint32_t t = 0; t < batch.seq_len; t++) batch.positions.push_back(t);
  batch.weight_sum = batch.tokens = batch.seq_len;
  batch.lengths = {batch.seq_len};
  test::AdapterSession opened = test::open_adapter_session(base_folder(), adapter, batch);
  const uint32_t vocab = static_cast<uint32_t>(opened.session->config.vocab_size);
  train::upload_micro_batch(test::context(), *opened.session->buffers, batch);
  vk::Buffer logits = test::context().allocate(uint64_t(batch.seq_len) * vocab * 4, vk::Category::workspace, "logits");
  test::context().run([&](vk::Recorder& r) { opened.session->transformer->record_logits(r, logits.range()); });
  std::vector<float> full(uint64_t(batch.seq_len) * vocab);
  test::context().download(logits, full.data());
  REQUIRE(decoded.size() == vocab);
  auto max_abs = [&](const std::vector<float>& other, size_t offset) {
    double worst = 0;
    for (size_t i = 0; i < vocab; i++) worst = std::max(worst, std::fabs(double(decoded[i]) - other[offset + i]));
    return worst;
  };
  const double error = max_abs(full, size_t(batch.seq_len - 1) * vocab);
  const double base = max_abs(generated_logits({}, nullptr), 0);
  MESSAGE("prefix generate vs full forward: next-token logits max-abs " << error << " (the base's differ by " << base
                                                                        << ")");
  CHECK(error <= 1e-4);  // model_hf's logits bound: the same fp32 ops over another row split
  CHECK(base > 1e-2);    // the prefix matters
  CHECK(max_abs(full, size_t(batch.seq_len - 2) * vocab) > 1e-2);  // the row before predicts another token
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

// (That the encoder learns is the 20-step trajectory above, PEFT's; generation with a prefix adapter,
// the generate test above.)
TEST_CASE("train: prefix projection's encoder resumes bit for bit from its checkpoint; the adapter says so") {
  train::TrainConfig full = test::tiny_lora_config(test::binary_dir() / "test-output" / "e2e", "e2e-prefix-projection");
  full.peft_type = spec::PeftType::prefix_tuning;
  full.prefix_projection = true;
  full.num_virtual_tokens = 4;
  full.encoder_hidden_size = 16;
  full.learning_rate = 3e-2;
  full.max_steps = 4;
  test::check_resume(full, 2, 2);  // the encoder's parameters and states are in checkpoint-2
  model::AdapterFile adapter = model::load_adapter_config(full.output_dir);
  CHECK(adapter.settings.prefix_projection);
  CHECK(adapter.settings.encoder_hidden == 16);
}

}  // TEST_SUITE
