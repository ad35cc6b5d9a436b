// LongLoRA against its reference (tests/reference/longlora_golden.py; data in tests/data/longlora/):
// --s2-attn's training step (LongLoRA's shifted sparse attention patched into transformers' Llama)
// gives LongLoRA's loss and LoRA gradients while logits (inference) attend in full; LongLoRA's "+"
// (modules_to_save embed_tokens and the norms, PEFT's names) gives PEFT's gradients of those too
// and saves in PEFT's layout. Bounds: model_hf's (logits max-abs 1e-4, loss relative 1e-5, every
// gradient relative 1e-3). The planner counts the trained norms and --s2-attn's scratch.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/base/files.hpp"
#include "engine/kernels/s2_attention.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/config.hpp"
#include "engine/train/trainer.hpp"
#include "tests/golden_run.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

fs::path longlora_dir() { return test::source_dir() / "tests/data/longlora"; }
fs::path base_folder() { return test::source_dir() / "tests/data/hf/llama3"; }

spec::RunSettings s2_settings() {
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.s2_group = 4;  // LongLoRA: int(16 * 1/4)
  return settings;
}

std::vector<std::string> tensor_names(const fs::path& file) {
  model::SafetensorsFile opened(file);
  std::vector<std::string> names;
  for (const auto& tensor : opened.tensors()) names.push_back(tensor.name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("longlora: --s2-attn's training step matches LongLoRA's S2 attention; logits attend in full") {
  spec::RunSettings settings = s2_settings();
  test::GoldenErrors errors =
      test::check_golden_variant(longlora_dir() / "s2_lora.golden.bin", "fp32", base_folder(),
                                 longlora_dir() / "s2_lora" / "adapter", settings, test::GoldenBounds{});
  MESSAGE("s2_lora: logits max-abs " << errors.logits << ", loss relative " << errors.loss
                                     << ", worst gradient relative " << errors.gradient << ", dembed relative "
                                     << errors.dembed);
  settings.gradient_checkpointing = true;  // the backward recomputes the S2 forward
  test::check_golden_variant(longlora_dir() / "s2_lora.golden.bin", "fp32", base_folder(),
                             longlora_dir() / "s2_lora" / "adapter", settings, test::GoldenBounds{});
}

TEST_CASE("longlora: trainable embeddings and norms (modules_to_save) match PEFT and save in PEFT's layout") {
  const fs::path peft_adapter = longlora_dir() / "s2_plus" / "adapter";
  test::GoldenErrors errors = test::check_golden_variant(longlora_dir() / "s2_plus.golden.bin", "fp32", base_folder(),
                                                         peft_adapter, s2_settings(), test::GoldenBounds{});
  MESSAGE("s2_plus: logits max-abs " << errors.logits << ", loss relative " << errors.loss
                                     << ", worst gradient relative (norms and embeddings included) "
                                     << errors.gradient);
  // What vktune saves of that session: PEFT's tensor names and modules_to_save list, and it reads
  // back to the same logits.
  test::GoldenFile golden(longlora_dir() / "s2_plus.golden.bin");
  test::GoldenBatch batch = test::golden_batch(golden);
  auto [lora, session] = test::open_adapter_session(base_folder(), peft_adapter, batch);
  const fs::path saved = test::temp_dir("longlora-s2-plus") / "adapter";
  model::save_adapter(test::context(), *session->buffers, session->plan.shape, lora, "tests/data/hf/llama3", saved);
  CHECK(tensor_names(saved / "adapter_model.safetensors") == tensor_names(peft_adapter / "adapter_model.safetensors"));
  auto config = nlohmann::json::parse(read_text_file(saved / "adapter_config.json"));
  CHECK(config["modules_to_save"] ==
        nlohmann::json({"embed_tokens", "input_layernorm", "post_attention_layernorm", "norm"}));
  test::GoldenErrors again = test::check_golden_variant(longlora_dir() / "s2_plus.golden.bin", "fp32", base_folder(),
                                                        saved, s2_settings(), test::GoldenBounds{});
  CHECK(again.logits == errors.logits);  // the same weights, read back exactly
}

}  // TEST_SUITE

TEST_SUITE("plan") {

TEST_CASE("plan: modules_to_save norms train as adapter tensors; --s2-attn plans its scratch") {
  spec::ModelShape shape;
  shape.vocab = 128, shape.hidden = 32, shape.intermediate = 64, shape.layers = 2, shape.heads = 4, shape.kv_heads = 2,
  shape.head_dim = 8;
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.training = true;
  settings.batch = 1;
  settings.seq_len = 64;
  const plan::MemoryPlan plain = plan::make_plan(shape, settings);
  settings.saved_norms = {"input_layernorm", "model.norm"};  // PEFT's suffixes: not post_attention_layernorm
  settings.s2_group = 16;
  const plan::MemoryPlan plus = plan::make_plan(shape, settings);
  CHECK(plus.parameters.trainable == plain.parameters.trainable + 3 * 32);  // two input_layernorms and model.norm
  for (const char* name :
       {"model.layers.0.input_layernorm.weight", "model.layers.1.input_layernorm.weight", "model.norm.weight"}) {
    CAPTURE(name);
    CHECK(plus.find(name).category == vk::Category::adapter_params);
    CHECK(plus.contains(std::string("grad.") + name));
  }
  CHECK_FALSE(plus.contains("grad.model.layers.0.post_attention_layernorm.weight"));
  CHECK_FALSE(plain.contains("s2.scratch"));
  CHECK(plus.find("s2.scratch").bytes >= 2 * 64 * (4 + 2) * 8 * 4 * 2);  // q, o, d_o, dq and k, v, dk, dv (fp32)
}

TEST_CASE("plan: modules_to_save entries match as PEFT's; one that matches no module is a UserError") {
  spec::ModelShape shape;  // Llama: input_layernorm, post_attention_layernorm per layer, model.norm; no q_norm
  shape.vocab = 128, shape.hidden = 32, shape.intermediate = 64, shape.layers = 2, shape.heads = 4, shape.kv_heads = 2,
  shape.head_dim = 8;
  train::TrainConfig config;
  const uint64_t plain = plan::make_plan(shape, train::run_settings(config, 64, &shape)).parameters.trainable;
  // peft 0.21.2 (get_peft_model on tests/data/hf/llama3): "norm" wraps all five norms (key.endswith), not
  // model.norm alone; "layernorm" the four layer norms.
  for (const auto& [entry, norms] :
       {std::pair<const char*, uint64_t>{"norm", 5}, {"layernorm", 4}, {"model.norm", 1}}) {
    const std::string name = entry;
    const uint64_t count = norms;
    CAPTURE(name);
    config.modules_to_save = name;
    CHECK(plan::make_plan(shape, train::run_settings(config, 64, &shape)).parameters.trainable == plain + count * 32);
  }
  for (const std::string entry : {"q_norm", "input_layer_norm", "input_layernorn"}) {
    CAPTURE(entry);
    config.modules_to_save = "embed_tokens," + entry;
    const std::string message = test::user_error_of([&] { train::run_settings(config, 64, &shape); });
    CHECK(message.find("'" + entry + "'") != std::string::npos);
    CHECK(message.find("input_layernorm, post_attention_layernorm, norm") != std::string::npos);  // the valid names
  }
}

TEST_CASE("plan: --s2-attn plans the padded rows (a multiple of 8) and sizes its scratch from them") {
  // vktune plan / sweep plan with --max-length 1001: training pads rows to 1008 (groups of 252).
  spec::ModelShape shape;
  shape.vocab = 128, shape.hidden = 32, shape.intermediate = 64, shape.layers = 2, shape.heads = 4, shape.kv_heads = 2,
  shape.head_dim = 8;
  train::TrainConfig config;
  config.s2_attn = true;
  config.per_device_train_batch_size = 2;
  const spec::RunSettings settings = train::run_settings(config, 1001, &shape);
  CHECK(settings.seq_len == 1008);
  CHECK(settings.s2_group == 252);
  const plan::MemoryPlan plan = plan::make_plan(shape, settings);
  CHECK(plan.find("s2.scratch").bytes ==
        kernels::s2_attention_scratch_bytes(2 * 1008, 4, 2, 8, settings.activation_dtype, true));
  config.s2_attn = false;
  CHECK(train::run_settings(config, 1001, &shape).seq_len == 1001);  // only --s2-attn pads
}

}  // TEST_SUITE

// model_hf, not model_io: opening the session opens a Vulkan device, whose driver (unloaded by exit)
// leaves a leak LeakSanitizer cannot name, and model_io runs under LSan (CMakeLists.txt).
TEST_SUITE("model_hf") {

TEST_CASE("adapter_config.json: a modules_to_save entry that matches no module is a UserError naming it") {
  // PEFT's s2_plus adapter with a q_norm entry added (Llama has none): PEFT would skip it silently,
  // so loading it (--adapter, resume, generate) refuses it, as --modules-to-save does.
  const fs::path adapter = test::temp_dir("longlora-bad-saved-norm") / "adapter";
  fs::create_directories(adapter);
  fs::copy(longlora_dir() / "s2_plus" / "adapter", adapter, fs::copy_options::recursive);
  auto config = nlohmann::json::parse(read_text_file(adapter / "adapter_config.json"));
  config["modules_to_save"].push_back("q_norm");
  write_file_atomically(adapter / "adapter_config.json", config.dump(2));
  test::GoldenFile golden(longlora_dir() / "s2_plus.golden.bin");
  const test::GoldenBatch batch = test::golden_batch(golden);
  const std::string message = test::user_error_of([&] { test::open_adapter_session(base_folder(), adapter, batch); });
  CHECK(message.find((adapter / "adapter_config.json").string()) != std::string::npos);
  CHECK(message.find("'q_norm'") != std::string::npos);
  CHECK(message.find("input_layernorm, post_attention_layernorm, norm") != std::string::npos);  // the valid names
}

}  // TEST_SUITE
