// PEFT's extras beside LoRA against PEFT 0.21.2 itself (tests/reference/peft_extras_golden.py; data
// in tests/data/peft_extras/): modules_to_save [embed_tokens, lm_head] and trainable_token_indices,
// on tests/data/hf/llama3 (untied embeddings) and tests/data/hf/smollm2 (tied: PEFT copies each
// module for modules_to_save, and ties the lm_head to the trained rows for trainable tokens).
// Bounds, those of model_hf: logits max-abs <= 1e-4 over the real tokens, loss relative <= 1e-5,
// every trainable gradient and d loss/d embedding relative <= 1e-3; 20 AdamW steps (clipping at 1.0,
// weight decay 0.01): each step's loss and gradient norm within 1e-4 relative (train_golden's).
// The adapters vktune writes load in PEFT with the same logits: the reference script checked that
// (peft_load_check.json) for adapter_format_version, and vktune still reads those adapters to the
// logits it wrote then. export (merge_and_unload) puts the trained modules and rows into the model
// (PEFT's logits from the merged model alone), and refuses a tied model trained apart.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/export.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/session.hpp"
#include "engine/train/step_runner.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const char* const kCases[] = {"mts_untied", "mts_tied", "tokens_untied", "tokens_tied"};

fs::path extras_dir() { return test::source_dir() / "tests/data/peft_extras"; }
fs::path base_folder(const std::string& name) {
  return test::source_dir() / "tests/data/hf" / (name.find("untied") != std::string::npos ? "llama3" : "smollm2");
}

// Logits (rows, vocab) of `folder` + the adapter in `adapter_dir` on the golden batch.
std::vector<float> adapter_logits(const test::GoldenFile& golden, const fs::path& folder, const fs::path& adapter_dir) {
  return test::run_golden(golden, folder, adapter_dir, test::lora_run_settings(kernels::WeightFormat::f32)).logits;
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("peft extras: modules_to_save and trainable tokens: logits, loss and every gradient match PEFT") {
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::GoldenErrors errors = test::check_golden_variant(
        extras_dir() / (std::string(name) + ".golden.bin"), "fp32", base_folder(name), extras_dir() / name / "adapter",
        test::lora_run_settings(kernels::WeightFormat::f32), test::GoldenBounds{});
    MESSAGE(std::string(name) << ": logits max-abs " << errors.logits << ", loss relative " << errors.loss
                              << ", worst gradient relative " << errors.gradient << ", dembed relative "
                              << errors.dembed);
  }
}

TEST_CASE("peft extras: the same gradients under gradient checkpointing and with a QLoRA-style bf16 table") {
  for (const char* name : {"mts_untied", "tokens_tied"}) {
    INFO(std::string(name));
    spec::RunSettings checkpointed = test::lora_run_settings(kernels::WeightFormat::f32);
    checkpointed.gradient_checkpointing = true;
    test::check_golden_variant(extras_dir() / (std::string(name) + ".golden.bin"), "fp32", base_folder(name),
                               extras_dir() / name / "adapter", checkpointed, test::GoldenBounds{});
  }
  // Trainable tokens over a bf16 embedding table (--dtype bf16): the trained rows are written into
  // it rounded to bf16, as PEFT's index_copy into a bf16 weight does; the other rows are bf16 anyway.
  // Only the bounds widen (bf16 weights against fp32 PEFT): logits 0.05, gradients 5%.
  spec::RunSettings bf16 = test::lora_run_settings(kernels::WeightFormat::f32);
  bf16.dtype = kernels::DType::bf16;
  test::GoldenBounds wide;
  wide.logits = 5e-2;
  wide.loss = 1e-2;
  wide.gradient = 5e-2;
  wide.dembed = 5e-2;
  test::GoldenErrors errors =
      test::check_golden_variant(extras_dir() / "tokens_tied.golden.bin", "fp32", base_folder("tokens_tied"),
                                 extras_dir() / "tokens_tied" / "adapter", bf16, wide);
  MESSAGE("tokens_tied over a bf16 table: logits max-abs " << errors.logits << ", worst gradient relative "
                                                           << errors.gradient);
}

TEST_CASE("peft extras: 20 AdamW steps match PEFT's trajectory (and write the adapters PEFT loads back)") {
  auto& ctx = test::context();
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::GoldenFile golden(extras_dir() / (std::string(name) + ".golden.bin"));
    test::GoldenBatch batch = test::golden_batch(golden);
    auto [lora, session] = test::open_adapter_session(base_folder(name), extras_dir() / name / "adapter", batch);
    train::OptimizerSettings optimizer;
    optimizer.weight_decay = 0.01;
    optimizer.max_grad_norm = 1.0;
    train::StepRunner runner(ctx, *session, optimizer);
    runner.reset();
    const double lr = golden["train.lr"].scalar();
    auto losses = golden["train.loss"].floats();
    auto norms = golden["train.grad_norm"].floats();
    double worst_loss = 0, worst_norm = 0;
    for (size_t step = 0; step < losses.size(); step++) {
      runner.step(int64_t(step) + 1, lr, {batch});
      double loss = runner.take_loss_sum(), norm = runner.device_state().grad_norm;
      worst_loss = std::max(worst_loss, std::fabs(loss - losses[step]) / losses[step]);
      worst_norm = std::max(worst_norm, std::fabs(norm - norms[step]) / norms[step]);
      INFO("step " << step << ": loss " << loss << " vs " << losses[step] << ", grad norm " << norm << " vs "
                   << norms[step]);
      CHECK(std::fabs(loss - losses[step]) / losses[step] <= 1e-4);
      CHECK(std::fabs(norm - norms[step]) / norms[step] <= 1e-4);
    }
    MESSAGE(std::string(name) << ": 20 steps, loss " << losses.front() << " -> " << losses.back()
                              << ", worst relative: loss " << worst_loss << ", grad norm " << worst_norm);
    // Regenerating the PEFT load check: the trained adapter and its logits, for --check-vktune.
    if (std::getenv("VKT_WRITE_PEFT_EXTRAS")) {
      const fs::path out = extras_dir() / "vktune" / name;
      model::save_adapter(ctx, *session->buffers, session->plan.shape, lora,
                          "tests/data/hf/" + base_folder(name).filename().string(), out / "adapter");
      std::vector<float> logits = adapter_logits(golden, base_folder(name), out / "adapter");
      const uint64_t vocab = session->plan.shape.vocab;
      std::vector<model::TensorToWrite> tensors;
      tensors.push_back(
          {"logits", model::FileDtype::F32, {batch.batch, batch.seq_len, vocab}, [&logits](model::TensorSink& sink) {
             sink.write(logits.data(), logits.size() * 4);
           }});
      model::write_safetensors(out / "logits.safetensors", std::move(tensors));
    }
  }
}

TEST_CASE("peft extras: PEFT loaded the adapters vktune writes (this format version) to vktune's logits") {
  auto report = nlohmann::json::parse(read_text_file(extras_dir() / "peft_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  for (const char* name : kCases) {
    INFO(std::string(name));
    const auto& result = report.at("cases").at(name);
    CHECK(result.at("passed").get<bool>());
    CHECK(result.at("logits_max_abs").get<double>() <= 1e-4);
    MESSAGE(std::string(name) << ": PEFT's logits of vktune's adapter vs vktune's: max-abs "
                              << result.at("logits_max_abs").get<double>());
    // The committed adapter still reads, in vktune, to the logits vktune wrote beside it.
    test::GoldenFile golden(extras_dir() / (std::string(name) + ".golden.bin"));
    test::GoldenBatch batch = test::golden_batch(golden);
    const fs::path written = extras_dir() / "vktune" / name;
    model::SafetensorsFile file(written / "logits.safetensors");
    REQUIRE(file.find("logits") != nullptr);
    std::vector<float> expected = model::to_fp32(*file.find("logits"));
    std::vector<float> actual = adapter_logits(golden, base_folder(name), written / "adapter");
    const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
    CHECK(test::worst_real_row_error(actual, expected, batch, vocab) <= 1e-5);
  }
}

TEST_CASE("peft extras: export (merge_and_unload) writes the trained modules and rows into the model") {
  // Untied modules_to_save and both trainable-token cases merge; PEFT's logits come back unmerged.
  for (const char* name : {"mts_untied", "tokens_untied", "tokens_tied"}) {
    INFO(std::string(name));
    merge::ExportOptions options;
    options.model = base_folder(name);
    options.adapter = extras_dir() / name / "adapter";
    options.output = test::temp_dir(std::string("peft-extras-export-") + name);
    options.show_progress = false;
    merge::export_merged(test::context(), options);
    test::GoldenFile golden(extras_dir() / (std::string(name) + ".golden.bin"));
    spec::RunSettings plain = test::lora_run_settings(kernels::WeightFormat::f32);
    plain.method = spec::Method::full;  // no adapter: the merged weights alone
    test::GoldenRun run = test::run_golden(golden, options.output, {}, plain);
    const auto vocab = static_cast<uint32_t>(golden["fp32.logits"].shape[2]);
    double worst =
        test::worst_real_row_error(run.logits, golden["fp32.logits"].floats(), test::golden_batch(golden), vocab);
    MESSAGE(std::string(name) << " exported: logits max-abs " << worst);
    CHECK(worst <= 1e-4);
  }
  // A tied model whose embed_tokens and lm_head were trained apart cannot stay tied: refused.
  merge::ExportOptions tied;
  tied.model = base_folder("mts_tied");
  tied.adapter = extras_dir() / "mts_tied" / "adapter";
  tied.output = test::temp_dir("peft-extras-export-mts-tied");
  tied.show_progress = false;
  CHECK_THROWS_WITH_AS(merge::export_merged(test::context(), tied), doctest::Contains("untied"), UserError);
}

}  // TEST_SUITE
