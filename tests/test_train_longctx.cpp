// The long-context recipe end to end, small enough for CI: a tiny base pretrained at 256
// positions is extended to 1024 (linear x4 RoPE, --s2-attn, LoRA on every linear layer plus
// trainable embeddings and norms: LongLoRA's "+"), and its validation loss at positions 256-1024
// (prompt = the first 256 tokens, weight 0) falls, below both the base as it is (RoPE
// extrapolated past 256) and the base with x4 RoPE untrained. The full measurement on
// examples/base is bench/longctx.md.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/config.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/long_context.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

// Text cut from an endless cycle of sentences, starting at sentence `start`: `length` bytes
// (the byte-level tokenizer: one token each).
std::string cycle_text(int start, size_t length) {
  const char* sentences[] = {"the sky is grey and the sea is grey. ", "a leaf is green, the sun is gold. ",
                             "red, blue, green and gold are colors. ", "the sun and the sea and the sky. ",
                             "one, two, three and four are numbers. "};
  std::string text;
  for (int i = start; text.size() < length; i++) text += sentences[i % 5];
  return text.substr(0, length);
}

void write_lines(const fs::path& path, const std::vector<nlohmann::json>& lines) {
  std::ofstream out(path);
  for (const auto& line : lines) out << line.dump() << "\n";
}

double loss_past_256(const fs::path& model, const fs::path& data, const std::optional<fs::path>& adapter = {}) {
  train::EvalOptions options;
  options.batch = 2;
  options.max_length = 1024;
  options.prompt_loss_weight = 0;  // positions 256-1023 only
  options.adapter = adapter;
  return train::evaluate_model(test::context(), model, data, options).loss;
}

// The base folder with config.json's RoPE scaled as `flags` say (what the trainer's warning tells
// a user of an adapter trained with --rope-scaling to do).
fs::path with_scaled_config(const fs::path& base, const fs::path& out, const train::TrainConfig& flags) {
  fs::create_directories(out);
  for (const auto& entry : fs::directory_iterator(base))
    if (entry.is_regular_file() && entry.path().filename() != "config.json")
      fs::copy_file(entry.path(), out / entry.path().filename());
  const model::ModelConfig scaled = train::with_rope_scaling(model::load_model_config(base), flags);
  write_file_atomically(out / "config.json", model::to_json(scaled).dump(2));
  return out;
}

}  // namespace

TEST_SUITE("train_e2e") {

TEST_CASE("long context: 256 -> 1024 with linear RoPE, --s2-attn, LoRA and trainable embeddings/norms") {
  const fs::path root = test::temp_dir("longctx-e2e");
  std::vector<nlohmann::json> short_texts, long_texts, eval;
  for (int i = 0; i < 16; i++) short_texts.push_back({{"text", cycle_text(i, 256)}});
  for (int i = 0; i < 8; i++) long_texts.push_back({{"text", cycle_text(3 * i + 1, 1023)}});
  for (int i = 0; i < 2; i++) {
    const std::string text = cycle_text(7 * i + 2, 1023);
    eval.push_back({{"prompt", text.substr(0, 255)}, {"completion", text.substr(255)}});  // + BOS: 256 prompt tokens
  }
  write_lines(root / "short.jsonl", short_texts);
  write_lines(root / "long.jsonl", long_texts);
  write_lines(root / "eval.jsonl", eval);

  // A base that has seen positions 0-255 only.
  train::TrainConfig pretrain;
  pretrain.model = test::tiny_model(root / "random").string();
  pretrain.data = (root / "short.jsonl").string();
  pretrain.output_dir = (root / "base").string();
  pretrain.method = spec::Method::full;
  pretrain.headless = true;
  pretrain.max_length = 256;
  pretrain.max_steps = 30;
  pretrain.per_device_train_batch_size = 8;
  pretrain.learning_rate = 1e-2;
  pretrain.lr_scheduler_type = train::ScheduleType::constant;
  pretrain.logging_steps = 30;
  pretrain.save_steps = 0;
  train::train(pretrain);

  train::TrainConfig extend = pretrain;
  extend.model = pretrain.output_dir;
  extend.data = (root / "long.jsonl").string();
  extend.output_dir = (root / "extended").string();
  extend.method = spec::Method::lora;
  extend.target_modules = "all-linear";
  extend.lora_r = 4;
  extend.modules_to_save = "embed_tokens,input_layernorm,post_attention_layernorm,norm";
  extend.rope_scaling = "linear";
  extend.rope_scaling_factor = 4;
  extend.s2_attn = true;
  extend.max_length = 1024;
  extend.max_steps = 12;
  extend.per_device_train_batch_size = 1;
  extend.logging_steps = 12;

  const double extrapolated = loss_past_256(extend.model, root / "eval.jsonl");
  const fs::path scaled = with_scaled_config(extend.model, root / "base-x4", extend);
  const double untrained_x4 = loss_past_256(scaled, root / "eval.jsonl");
  train::train(extend);
  const double extended = loss_past_256(scaled, root / "eval.jsonl", fs::path(extend.output_dir));
  MESSAGE("validation loss at positions 256-1023: base " << extrapolated << ", base with linear x4 RoPE "
                                                         << untrained_x4 << ", extended " << extended);
  CHECK(extended < extrapolated - 0.1);
  CHECK(extended < untrained_x4 - 0.1);
  // The adapter holds the trained norms under PEFT's names.
  auto config = nlohmann::json::parse(read_text_file(fs::path(extend.output_dir) / "adapter_config.json"));
  CHECK(config["modules_to_save"].size() == 4);
}

TEST_CASE("long context: --s2-attn trains with --packing (each packed example inside its groups)") {
  // The kernel's packed-row case (tests/test_kernels_s2_attention.cpp) checks the masking against the
  // fp64 reference; here the whole pipeline: packed rows of 64 (groups of 16), 3 steps.
  train::TrainConfig flags =
      test::tiny_random_lora_config(test::binary_dir() / "test-output" / "longctx-packed", "longctx-packed-s2");
  flags.s2_attn = true;
  flags.packing = true;
  flags.max_length = 64;
  flags.max_steps = 3;
  model::ModelConfig config = model::load_model_config(flags.model);
  CHECK(train::s2_group_size(flags, config, 64) == 16);
  train::train(flags);
  const std::vector<double> losses = test::logged_losses(flags.output_dir);
  REQUIRE(losses.size() == 3);
  MESSAGE("--packing --s2-attn losses: " << losses[0] << " -> " << losses[2]);
  for (double loss : losses) CHECK(std::isfinite(loss));
  CHECK(losses[2] < losses[0]);
  CHECK(fs::exists(fs::path(flags.output_dir) / "adapter_model.safetensors"));
  flags.packing = false;
  CHECK(train::s2_sequence_length(flags, 1001) == 1008);
}

}  // TEST_SUITE
