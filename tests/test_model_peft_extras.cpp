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
#include "tests/golden_run.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const char* const kCases[] = {"mts_untied", "mts_tied", "tokens_untied", "tokens_tied", "layers_untied"};

fs::path extras_dir() { return test::source_dir() / "tests/data/peft_extras"; }
fs::path base_folder(const std::string& name) {
  return test::source_dir() / "tests/data/hf" / (name.find("untied") != std::string::npos ? "llama3" : "smollm2");
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
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::GoldenFile golden(extras_dir() / (std::string(name) + ".golden.bin"));
    test::GoldenBatch batch = test::golden_batch(golden);
    auto [lora, session] = test::open_adapter_session(base_folder(name), extras_dir() / name / "adapter", batch);
    test::TrajectoryErrors errors = test::check_adamw_trajectory(golden, batch, *session);
    auto losses = golden["train.loss"].floats();
    MESSAGE(std::string(name) << ": 20 steps, loss " << losses.front() << " -> " << losses.back()
                              << ", worst relative: loss " << errors.loss << ", grad norm " << errors.grad_norm);
    // Regenerating the PEFT load check: the trained adapter and its logits, for --check-vktune.
    if (std::getenv("VKT_WRITE_PEFT_EXTRAS"))
      test::write_adapter_and_logits(golden, *session, lora, base_folder(name), extras_dir() / "vktune" / name);
  }
}

TEST_CASE("peft extras: PEFT loaded the adapters vktune writes (this format version) to vktune's logits") {
  auto report = nlohmann::json::parse(read_text_file(extras_dir() / "peft_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  for (const char* name : kCases) {
    INFO(std::string(name));
    // The committed adapter still reads, in vktune, to the logits vktune wrote beside it.
    test::check_peft_load(report, name, test::GoldenFile(extras_dir() / (std::string(name) + ".golden.bin")),
                          base_folder(name), extras_dir() / "vktune" / name);
  }
}

TEST_CASE("peft extras: export (merge_and_unload) writes the trained modules and rows into the model") {
  // Untied modules_to_save and both trainable-token cases merge; PEFT's logits come back unmerged.
  for (const char* name : {"mts_untied", "tokens_untied", "tokens_tied"}) {
    INFO(std::string(name));
    double worst = test::exported_logits_error(test::GoldenFile(extras_dir() / (std::string(name) + ".golden.bin")),
                                               base_folder(name), extras_dir() / name / "adapter",
                                               std::string("peft-extras-export-") + name);
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
