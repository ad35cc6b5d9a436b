// The PEFT families beside LoRA (--peft-type, issue 17) against PEFT 0.21.2 itself
// (tests/reference/peft_types_golden.py; data in tests/data/peft_types/): IA3 with IA3Config's
// defaults on tests/data/hf/llama3 (k_proj, v_proj output-scaled; down_proj input-scaled) and on
// tests/data/hf/qwen2 (q_proj with its bias, v_proj, down_proj), every vector moved off its ones;
// BitFit (q/k/v biases alone, vktune's file layout; PEFT has no BitFit) on qwen2 against transformers.
// Bounds, those of model_hf: logits max-abs <= 1e-4 over the real tokens, loss relative <= 1e-5,
// every trainable gradient and d loss/d embedding relative <= 1e-3, in fp32 and over an NF4 (+
// double quant) base against PEFT on the bitsandbytes-exact dequantized weights; 20 AdamW steps
// (clipping at 1.0, weight decay 0.01): each step's loss and gradient norm within 1e-4 relative.
// The adapters vktune writes load in PEFT with the same logits (peft_load_check.json, written by the
// reference script for adapter_format_version); export merges IA3 into the weights (PEFT's logits
// from the merged model alone); an adapter-space merge refuses it. DoRA (use_dora=True, r=4, every
// linear module of llama3, magnitudes and B moved off their start) under the same bounds; export
// merges it as PEFT's merge does.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/kernels/dora.hpp"
#include "engine/merge/adapter_merge.hpp"
#include "engine/merge/export.hpp"
#include "engine/merge/gguf_export.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/dora.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/ia3.hpp"
#include "engine/model/session.hpp"
#include "engine/plan/plan.hpp"
#include "engine/quant/quantize.hpp"
#include "engine/train/config.hpp"
#include "tests/golden_run.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const char* const kCases[] = {"ia3_llama", "ia3_qwen2", "bitfit_qwen2", "dora_llama"};

fs::path types_dir() { return test::source_dir() / "tests/data/peft_types"; }
fs::path base_folder(const std::string& name) {
  return test::source_dir() / "tests/data/hf" / (name.find("qwen2") != std::string::npos ? "qwen2" : "llama3");
}
fs::path golden_path(const std::string& name) { return types_dir() / (name + ".golden.bin"); }
fs::path adapter_dir(const std::string& name) { return types_dir() / name / "adapter"; }

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("peft types: IA3 reads PEFT's adapter_config.json and sizes its vectors as PEFT does") {
  model::AdapterFile file = model::load_adapter_config(adapter_dir("ia3_llama"));
  CHECK(file.settings.peft_type == spec::PeftType::ia3);
  CHECK(file.settings.targets.empty());
  CHECK(file.settings.ia3_feedforward == std::vector<spec::Module>{spec::Module::down_proj});
  CHECK(file.settings.ia3_targets.size() == 3);
  spec::ModelShape llama = model::model_shape(model::load_model_config(base_folder("ia3_llama")));
  spec::ModelShape qwen2 = model::model_shape(model::load_model_config(base_folder("ia3_qwen2")));
  // PEFT's defaults per family (peft/utils/constants.py).
  CHECK(model::ia3_default_targets(llama) ==
        std::vector<spec::Module>{spec::Module::k_proj, spec::Module::v_proj, spec::Module::down_proj});
  CHECK(model::ia3_default_targets(qwen2) ==
        std::vector<spec::Module>{spec::Module::q_proj, spec::Module::v_proj, spec::Module::down_proj});
  // The planner counts (kv + kv + intermediate) values per layer, trained.
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::ia3;
  model::resolve_peft_targets(settings, "", &llama);
  CHECK(settings.target_modules.empty());
  plan::MemoryPlan plan = plan::make_plan(llama, settings);
  const uint64_t kv = llama.kv_heads * llama.head_dim;
  CHECK(plan.parameters.trainable == llama.layers * (2 * kv + llama.intermediate));
  CHECK(plan.bytes(vk::Category::adapter_params) == plan.parameters.trainable * 4);
  // A feedforward module outside target_modules is refused, naming the field.
  const fs::path bad = test::temp_dir("peft-types-bad-ia3");
  nlohmann::json config = nlohmann::json::parse(read_text_file(adapter_dir("ia3_llama") / "adapter_config.json"));
  config["feedforward_modules"] = {"down_proj", "up_proj"};
  write_file_atomically(bad / "adapter_config.json", config.dump());
  CHECK_THROWS_WITH_AS(model::load_adapter_config(bad), doctest::Contains("feedforward_modules"), UserError);
  // Phi-3's fused projections: refused with the reason.
  spec::ModelShape fused = llama;
  fused.fused_projections = true;
  CHECK_THROWS_WITH_AS(model::ia3_default_targets(fused), doctest::Contains("fused"), UserError);
}

TEST_CASE("peft types: --peft-type names PEFT's families, each one accepted") {
  train::TrainConfig config;
  config.model = "m";
  config.data = "d.jsonl";
  config.output_dir = "out";
  for (spec::PeftType type : {spec::PeftType::lora, spec::PeftType::dora, spec::PeftType::ia3, spec::PeftType::bitfit,
                              spec::PeftType::prompt_tuning, spec::PeftType::prefix_tuning, spec::PeftType::p_tuning}) {
    config.peft_type = type;
    CHECK_NOTHROW(train::validate(config));
  }
  config.peft_type = spec::PeftType::ia3;
  config.method = spec::Method::full;
  CHECK_THROWS_WITH_AS(train::validate(config), doctest::Contains("--method full"), UserError);
}

TEST_CASE("peft types: BitFit trains the q/k/v biases, and refuses a model without biases by name") {
  spec::ModelShape llama = model::model_shape(model::load_model_config(base_folder("ia3_llama")));
  spec::ModelShape qwen2 = model::model_shape(model::load_model_config(base_folder("bitfit_qwen2")));
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::bitfit;
  CHECK_THROWS_WITH_AS(model::resolve_peft_targets(settings, "", &llama, "models/llama"),
                       doctest::Contains("models/llama has no linear biases"), UserError);
  model::resolve_peft_targets(settings, "", &qwen2, "models/qwen2");
  CHECK(settings.target_modules.empty());
  plan::MemoryPlan plan = plan::make_plan(qwen2, settings);
  const uint64_t kv = qwen2.kv_heads * qwen2.head_dim;
  CHECK(plan.parameters.trainable == qwen2.layers * (qwen2.heads * qwen2.head_dim + 2 * kv));
  CHECK(plan.contains("grad.model.layers.1.self_attn.k_proj.bias"));
  model::AdapterFile file = model::load_adapter_config(adapter_dir("bitfit_qwen2"));
  CHECK(file.settings.peft_type == spec::PeftType::bitfit);
}

TEST_CASE("peft types: DoRA reads use_dora, counts its magnitudes, and starts them at the rows' norms (NF4 too)") {
  model::AdapterFile file = model::load_adapter_config(adapter_dir("dora_llama"));
  CHECK(file.settings.peft_type == spec::PeftType::dora);
  CHECK(file.settings.targets.size() == 7);
  const fs::path folder = base_folder("dora_llama");
  spec::ModelShape llama = model::model_shape(model::load_model_config(folder));
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.peft_type = spec::PeftType::dora;
  settings.target_modules = file.settings.targets;
  settings.lora_r = file.settings.rank;
  settings.training = true;
  plan::MemoryPlan plan = plan::make_plan(llama, settings);
  uint64_t lora = 0, magnitudes = 0;
  for (spec::Module module : file.settings.targets) {
    lora += file.settings.rank * (spec::module_in_features(llama, module) + spec::module_out_features(llama, module));
    magnitudes += spec::module_out_features(llama, module);
  }
  CHECK(plan.parameters.trainable == llama.layers * (lora + magnitudes));
  CHECK(plan.contains("grad.model.layers.1.mlp.down_proj.lora_magnitude_vector"));
  // A fresh adapter: m = ‖W‖ per output row, of the dequantized weight over an NF4 base.
  const std::string weight_name = model::layer_tensor_name(1, spec::Module::gate_proj);
  std::vector<float> w = model::to_fp32(model::SafetensorsFolder(folder).tensor(weight_name));
  const auto out = static_cast<uint32_t>(spec::module_out_features(llama, spec::Module::gate_proj));
  const auto in = static_cast<uint32_t>(spec::module_in_features(llama, spec::Module::gate_proj));
  for (kernels::WeightFormat format : {kernels::WeightFormat::f32, kernels::WeightFormat::nf4}) {
    INFO(std::string(kernels::quant_name(format)));
    spec::RunSettings run = settings;
    run.base_format = format;
    run.batch = 1;
    run.seq_len = 8;
    model::LoraSettings lora_settings = file.settings;
    auto session = model::open_model(test::context(), folder, run, &lora_settings);
    model::init_adapter(test::context(), *session->buffers, session->plan.shape, lora_settings, 5);
    test::context().run([&](vk::Recorder& r) { session->transformer->record_dora_init(r); });
    std::vector<float> m(out);
    test::context().download(session->buffers->buffer(model::dora_buffer_name(llama, 1, spec::Module::gate_proj)),
                             m.data(), 0, out * 4);
    std::vector<float> base = w;
    if (format == kernels::WeightFormat::nf4) {
      quant::QuantOptions options;
      options.block_size = run.quant_block;
      options.double_quant = run.double_quant;
      base = quant::dequantize(quant::quantize(w.data(), out, in, format, options));
    }
    std::vector<float> expected(out), inv(out), scale(out);
    ref::dora_norm(base.data(), expected.data(), inv.data(), scale.data(), out, in, true);
    test::check_close(m, expected, 1e-12, 1e-5, "m = row norms of W");
  }
}

TEST_CASE("peft types: IA3, BitFit and DoRA logits, loss and every gradient match (fp32, checkpointed, NF4 base)") {
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::check_fp32_and_nf4_variants(name, golden_path(name), base_folder(name), adapter_dir(name));
  }
}

TEST_CASE("peft types: 20 AdamW steps match the reference trajectory (and write the adapters it loads back)") {
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::GoldenFile golden(golden_path(name));
    test::GoldenBatch batch = test::golden_batch(golden);
    test::AdapterSession opened = test::open_adapter_session(base_folder(name), adapter_dir(name), batch);
    test::TrajectoryErrors errors = test::check_adamw_trajectory(golden, batch, *opened.session);
    MESSAGE(std::string(name) << ": 20 steps, worst relative: loss " << errors.loss << ", grad norm "
                              << errors.grad_norm);
    if (std::getenv("VKT_WRITE_PEFT_TYPES"))  // the trained adapter and its logits, for --check-vktune
      test::write_adapter_and_logits(golden, *opened.session, opened.lora, base_folder(name),
                                     types_dir() / "vktune" / name);
  }
}

TEST_CASE("peft types: the reference loaded the adapters vktune writes (this format version) to its logits") {
  auto report = nlohmann::json::parse(read_text_file(types_dir() / "peft_load_check.json"));
  CHECK(report.at("adapter_format_version").get<int>() == model::adapter_format_version);
  for (const char* name : kCases) {
    INFO(std::string(name));
    test::check_peft_load(report, name, test::GoldenFile(golden_path(name)), base_folder(name),
                          types_dir() / "vktune" / name);
  }
}

TEST_CASE("peft types: export merges IA3 (rows, bias or columns), BitFit's biases and DoRA into the model") {
  for (const char* name : kCases) {
    INFO(std::string(name));
    double worst = test::exported_logits_error(test::GoldenFile(golden_path(name)), base_folder(name),
                                               adapter_dir(name), std::string("peft-types-export-") + name);
    MESSAGE(std::string(name) << " exported: logits max-abs " << worst);
    CHECK(worst <= 1e-4);
  }
}

TEST_CASE("peft types: generation with the DoRA adapter (inference plan, KV cache) gives the merged model's logits") {
  merge::ExportOptions options;
  options.model = base_folder("dora_llama");
  options.adapter = adapter_dir("dora_llama");
  options.output = test::temp_dir("peft-types-dora-generate");
  options.show_progress = false;
  merge::export_merged(test::context(), options);
  // The last step's logits of a greedy run (the tiny model's greedy text is one repeated token).
  auto last_logits = [](const fs::path& model, const fs::path& adapter) {
    model::GeneratorOptions generator_options;
    generator_options.model = model;
    if (!adapter.empty()) generator_options.adapter = adapter;
    generator_options.max_tokens = 32;
    generator_options.prefill_rows = 3;  // the prompt in two blocks, then one row per step
    model::Generator generator(test::context(), generator_options);
    model::SamplingOptions sampling;
    sampling.max_new_tokens = 12;
    generator.generate({5, 17, 42, 99, 7}, sampling);
    return generator.last_logits();
  };
  const std::vector<float> adapted = last_logits(options.model, adapter_dir("dora_llama"));
  auto max_abs = [&](const std::vector<float>& other) {
    double worst = 0;
    for (size_t i = 0; i < adapted.size(); i++) worst = std::max(worst, std::fabs(double(adapted[i]) - other[i]));
    return worst;
  };
  const double merged = max_abs(last_logits(options.output, {})), base = max_abs(last_logits(options.model, {}));
  MESSAGE("DoRA generation's last logits: max-abs " << merged << " from the merged model's, " << base
                                                    << " from the base's");
  CHECK(merged <= 1e-4);
  CHECK(base > 1e-2);  // the adapter matters
}

TEST_CASE("peft types: an adapter-space merge refuses IA3, BitFit and DoRA adapters") {
  for (const char* name : {"ia3_qwen2", "bitfit_qwen2", "dora_llama"}) {
    INFO(std::string(name));
    const std::string model = base_folder(name).string() + "+" + adapter_dir(name).string();
    merge::MergeConfig config = merge::parse_merge_config(
        "merge_method: linear\nmodels:\n  - model: " + model + "\n    parameters: {weight: 1.0}\n", "inline.yaml", ".");
    merge::AdapterMergeOptions options;
    options.output = test::temp_dir(std::string("peft-types-space-") + name);
    options.concatenate = true;
    options.show_progress = false;
    const char* reason = std::string(name) == "dora_llama" ? "magnitude vectors" : "has none of";
    CHECK_THROWS_WITH_AS(merge::run_adapter_merge(test::context(), config, options), doctest::Contains(reason),
                         UserError);
  }
}

TEST_CASE("peft types: a GGUF LoRA export refuses IA3, BitFit and DoRA adapters") {
  for (const char* name : {"ia3_llama", "bitfit_qwen2", "dora_llama"}) {
    INFO(std::string(name));
    merge::GgufLoraExportOptions options;
    options.model = base_folder(name);
    options.adapter = adapter_dir(name);
    options.output = test::temp_dir(std::string("peft-types-gguf-") + name) / "adapter.gguf";
    CHECK_THROWS_WITH_AS(merge::export_gguf_lora(options), doctest::Contains("LoRA factors only"), UserError);
  }
}

}  // TEST_SUITE
