// The trainer end to end on tiny models: LoRA and QLoRA runs whose loss falls, the files they
// write (PEFT adapter, metrics.jsonl, run.json, checkpoints), gradient accumulation equal to a
// bigger batch, and a resumed run continuing bit-identically.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/generation_eval.hpp"
#include "engine/train/soft_prompt_run.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"
#include "tests/tiny_runs.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

train::TrainConfig tiny_config(const std::string& name) {
  return test::tiny_lora_config(test::binary_dir() / "test-output" / "e2e", "e2e-" + name);
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  double sum = 0;
  for (size_t i = from; i < to; i++) sum += v[i];
  return sum / double(to - from);
}


}  // namespace

TEST_SUITE("train_e2e") {

TEST_CASE("train: LoRA on a tiny model, the loss falls and PEFT files are written") {
  train::TrainConfig config = tiny_config("lora");
  train::TrainSummary summary = train::train(config);
  auto losses = test::logged_losses(config.output_dir);
  REQUIRE(losses.size() == 50);
  double first = mean(losses, 0, 5), last = mean(losses, 40, 50);
  MESSAGE("LoRA loss (mean of first 5 / last 10 steps) " << first << " -> " << last << ", " << summary.tokens_per_second
                                                         << " tokens/s");
  CHECK(last < 0.8 * first);  // measured: 2.99 -> 2.16 (a 2-layer, 32-wide base learns slowly through r=4)
  json adapter = json::parse(read_text_file(fs::path(config.output_dir) / "adapter_config.json"));
  CHECK(adapter["peft_type"] == "LORA");
  CHECK(adapter["task_type"] == "CAUSAL_LM");
  CHECK(adapter["r"] == 4);
  CHECK(adapter["bias"] == "none");
  CHECK(adapter["target_modules"].size() == 7);
  model::SafetensorsFile weights(fs::path(config.output_dir) / "adapter_model.safetensors");
  const auto& a = weights.tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  CHECK(a.shape == std::vector<uint64_t>{4, 32});
  const auto& b = weights.tensor("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
  CHECK(b.shape == std::vector<uint64_t>{32, 4});
  json run = json::parse(read_text_file(fs::path(config.output_dir) / "run.json"));
  CHECK(run["state"] == "finished");
  CHECK(run["max_steps"] == 50);
}

TEST_CASE("train: QLoRA (NF4 + double quant base) on a tiny model, the loss falls") {
  train::TrainConfig config = tiny_config("qlora");
  config.method = spec::Method::qlora;
  train::TrainSummary summary = train::train(config);
  CHECK(summary.plan.settings.base_format == kernels::WeightFormat::nf4);
  CHECK(summary.plan.settings.double_quant);
  CHECK(summary.measured.category_peak(vk::Category::quantized_weights) > 0);
  auto losses = test::logged_losses(config.output_dir);
  REQUIRE(losses.size() == 50);
  double first = mean(losses, 0, 5), last = mean(losses, 40, 50);
  MESSAGE("QLoRA loss (mean of first 5 / last 10 steps) " << first << " -> " << last << ", "
                                                          << summary.tokens_per_second << " tokens/s");
  CHECK(last < 0.8 * first);
}

TEST_CASE("train: --qat int4 (LoRA: fq(W + s·B·A); full: fq(W)) on a tiny model, the loss falls") {
  for (spec::Method method : {spec::Method::lora, spec::Method::full}) {
    const std::string name = std::string("qat-") + spec::method_name(method);
    INFO(name);
    train::TrainConfig plain = tiny_config(name + "-plain");
    plain.method = method;
    plain.max_steps = 1;
    train::train(plain);
    train::TrainConfig config = tiny_config(name);
    config.method = method;
    config.qat = kernels::WeightFormat::int4;
    config.max_steps = 30;
    if (method == spec::Method::full) config.learning_rate = 1e-3;
    train::TrainSummary summary = train::train(config);
    CHECK(summary.plan.settings.qat_format == kernels::WeightFormat::int4);
    auto losses = test::logged_losses(config.output_dir);
    REQUIRE(losses.size() == 30);
    // The fake-quantized forward changes the very first loss (same weights, same batch).
    CHECK(losses[0] != test::logged_losses(plain.output_dir)[0]);
    double first = mean(losses, 0, 5), last = mean(losses, 20, 30);
    MESSAGE(name << " int4 loss (mean of first 5 / last 10 steps) " << first << " -> " << last);
    CHECK(last < 0.85 * first);
  }
}

TEST_CASE("train: QLoRA with modules_to_save and trainable tokens writes PEFT's extras; generate reads them") {
  for (bool tokens : {false, true}) {
    train::TrainConfig config = tiny_config(tokens ? "trainable-tokens" : "modules-to-save");
    config.method = spec::Method::qlora;
    config.max_steps = 10;
    if (tokens)
      config.trainable_token_indices = "3,17,40";
    else
      config.modules_to_save = "embed_tokens,lm_head";
    train::TrainSummary summary = train::train(config);
    // The extras are trained fp32 adapter tensors with gradients and AdamW states; the base stays NF4.
    const std::string trained = tokens ? "model.embed_tokens.token_delta" : "model.embed_tokens.weight";
    CHECK(summary.plan.find(trained).category == vk::Category::adapter_params);
    CHECK(summary.plan.contains("grad." + trained));
    CHECK(summary.plan.contains("adam_v." + trained));
    CHECK(summary.plan.settings.base_format == kernels::WeightFormat::nf4);
    json adapter = json::parse(read_text_file(fs::path(config.output_dir) / "adapter_config.json"));
    model::SafetensorsFile weights(fs::path(config.output_dir) / "adapter_model.safetensors");
    model::SafetensorsFile base(fs::path(config.model) / "model.safetensors");
    if (tokens) {
      CHECK(adapter["trainable_token_indices"] == json::array({3, 17, 40}));
      const auto& delta = weights.tensor("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta");
      CHECK(delta.shape == std::vector<uint64_t>{3, 32});
      // Row 0 started as the base's row 3 and moved.
      auto rows = model::to_fp32(delta), table = model::to_fp32(base.tensor("model.embed_tokens.weight"));
      double moved = 0;
      for (size_t c = 0; c < 32; c++) moved = std::max(moved, double(std::fabs(rows[c] - table[3 * 32 + c])));
      CHECK(moved > 1e-4);
      CHECK(moved < 1.0);
    } else {
      CHECK(adapter["modules_to_save"] == json::array({"embed_tokens", "lm_head"}));
      CHECK(weights.tensor("base_model.model.model.embed_tokens.weight").shape ==
            base.tensor("model.embed_tokens.weight").shape);
      CHECK(weights.find("base_model.model.lm_head.weight") != nullptr);
    }
    // evaluate and generate read the extras back: the adapter's loss is below the base model's.
    train::EvalOptions eval;
    eval.base_format = kernels::WeightFormat::nf4;
    train::EvalResult plain = train::evaluate_model(test::context(), config.model, config.data, eval);
    eval.adapter = config.output_dir;
    train::EvalResult adapted = train::evaluate_model(test::context(), config.model, config.data, eval);
    MESSAGE(std::string(tokens ? "trainable tokens" : "modules_to_save")
            << ": eval loss base " << plain.loss << ", adapter " << adapted.loss);
    CHECK(adapted.loss < plain.loss);
    model::GeneratorOptions generate;
    generate.model = config.model;
    generate.adapter = fs::path(config.output_dir);
    generate.max_tokens = 16;
    model::Generator generator(test::context(), generate);
    model::SamplingOptions sampling;
    sampling.max_new_tokens = 4;
    CHECK(generator.generate({1, 3, 17}, sampling).size() <= 4);
  }
}

TEST_CASE("generate: an adapter trained with --lora-dropout runs without dropout at inference") {
  train::TrainConfig config = tiny_config("dropout-inference");
  config.max_steps = 4;
  config.lora_dropout = 0.1;
  train::train(config);
  // The same adapter with lora_dropout 0 in its config: inference must not differ at all.
  const fs::path plain = fs::path(config.output_dir + "-no-dropout");
  fs::remove_all(plain);
  fs::copy(config.output_dir, plain, fs::copy_options::recursive);
  json adapter = json::parse(read_text_file(plain / "adapter_config.json"));
  CHECK(adapter["lora_dropout"].get<double>() == doctest::Approx(0.1));
  adapter["lora_dropout"] = 0.0;
  write_file_atomically(plain / "adapter_config.json", adapter.dump(2));
  auto last_logits = [&](const fs::path& adapter_dir) {
    model::GeneratorOptions options;
    options.model = config.model;
    options.adapter = adapter_dir;
    options.max_tokens = 16;
    model::Generator generator(test::context(), options);
    model::SamplingOptions sampling;
    sampling.max_new_tokens = 3;
    generator.generate({1, 3, 17}, sampling);
    return generator.last_logits();
  };
  std::vector<float> with_dropout = last_logits(config.output_dir), without = last_logits(plain);
  REQUIRE(with_dropout.size() == without.size());
  CHECK(with_dropout == without);
}

TEST_CASE("train: k accumulated micro-batches equal one batch k times larger") {
  train::TrainConfig big = tiny_config("accumulate-big");
  big.max_steps = 6;
  big.shuffle = false;
  big.per_device_train_batch_size = 4;
  big.gradient_accumulation_steps = 1;
  train::TrainConfig small = tiny_config("accumulate-small");
  small.max_steps = 6;
  small.shuffle = false;
  small.per_device_train_batch_size = 2;
  small.gradient_accumulation_steps = 2;
  train::train(big);
  train::train(small);
  auto big_losses = test::logged_losses(big.output_dir), small_losses = test::logged_losses(small.output_dir);
  REQUIRE(big_losses.size() == 6);
  REQUIRE(small_losses.size() == 6);
  // The same examples per step and Σw over the whole step: only fp32 summation order differs.
  for (size_t i = 0; i < 6; i++) CHECK(small_losses[i] == doctest::Approx(big_losses[i]).epsilon(1e-5));
  CHECK(test::relative_weight_difference(big.output_dir, small.output_dir) < 1e-4);
}

TEST_CASE("train: a run killed after step 10 resumes and repeats losses 11..20 bit for bit") {
  train::TrainConfig full = tiny_config("resume-reference");
  full.max_steps = 20;
  full.lora_dropout = 0.1;  // the dropout RNG must resume too
  test::check_resume(full, 10, 5);
}

TEST_CASE("train: with modules_to_save and trainable tokens a resumed run repeats the losses bit for bit") {
  train::TrainConfig full = tiny_config("resume-extras-reference");
  full.max_steps = 8;
  full.modules_to_save = "lm_head";  // the trained copy, the rows and their AdamW states resume too
  full.trainable_token_indices = "3,17,40";
  test::check_resume(full, 4, 4);
}

TEST_CASE("train: P-tuning's encoder learns, resumes bit for bit from its checkpoint, and its adapter generates") {
  train::TrainConfig full = tiny_config("resume-p-tuning-reference");
  full.peft_type = spec::PeftType::p_tuning;
  full.num_virtual_tokens = 4;
  full.encoder_hidden_size = 16;
  full.max_steps = 8;
  test::check_resume(full, 4, 4);  // the encoder's parameters and states are in checkpoint-4
  auto losses = test::logged_losses(full.output_dir);
  MESSAGE("P-tuning loss " << losses.front() << " -> " << losses.back());
  CHECK(losses.back() < losses.front());
  json adapter = json::parse(read_text_file(fs::path(full.output_dir) / "adapter_config.json"));
  CHECK(adapter["peft_type"] == "P_TUNING");
  CHECK(adapter["encoder_hidden_size"] == 16);
  model::GeneratorOptions generate;  // PEFT's inference: the saved prompt, no encoder
  generate.model = full.model;
  generate.adapter = fs::path(full.output_dir);
  generate.max_tokens = 16;
  model::Generator generator(test::context(), generate);
  model::SamplingOptions sampling;
  sampling.max_new_tokens = 3;
  CHECK(generator.generate({1, 3, 17}, sampling).size() <= 3);
}

TEST_CASE("train: P-tuning's LSTM encoder resumes bit for bit, its checkpoint under PEFT's names") {
  train::TrainConfig full = tiny_config("resume-p-tuning-lstm-reference");
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

TEST_CASE("train: adamw_8bit resumes bit for bit (8-bit states and absmax in the checkpoint); run.json names it") {
  train::TrainConfig full = tiny_config("resume-8bit-reference");
  full.max_steps = 8;
  full.optim = spec::Optimizer::adamw_8bit;
  full.modules_to_save = "lm_head";  // a tensor of >= 4096 values: its states are 8-bit codes + absmax
  test::check_resume(full, 4, 4);
  const json run = json::parse(std::ifstream(fs::path(full.output_dir) / "run.json"));
  const json& settings = run.contains("config") ? run["config"] : run;
  CHECK(settings.value("optim", "") == "adamw_8bit");
}

TEST_CASE("train: bad input gives a clear error and leaves no output") {
  fs::path root = test::binary_dir() / "test-output" / "e2e";
  auto expect_error = [&](train::TrainConfig config, const std::string& expected, const std::string& name) {
    config.output_dir = (root / ("bad-" + name)).string();
    fs::remove_all(config.output_dir);
    std::string message;
    try {
      train::train(config);
    } catch (const UserError& error) {
      message = std::string(error.what()) + " | " + error.hint();
    }
    INFO(name << ": " << message);
    CHECK(message.find(expected) != std::string::npos);
    CHECK_FALSE(fs::exists(config.output_dir));
  };
  auto write = [&](const std::string& name, const std::string& contents) {
    fs::path path = root / name;
    std::ofstream(path) << contents;
    return path.string();
  };
  train::TrainConfig config = tiny_config("bad");
  train::TrainConfig c = config;
  c.data =
      write("malformed.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\" \"completion\": 1}\n");
  expect_error(c, "malformed.jsonl:2", "malformed");
  c = config;
  c.data = write("missing.jsonl", "{\"prompt\": \"a\"}\n");
  expect_error(c, "missing \"completion\"", "missing-field");
  c = config;
  c.data = write("empty.jsonl", "\n");
  expect_error(c, "has no examples", "empty");
  c = config;
  c.data = write("long.jsonl", "{\"prompt\": \"" + std::string(300, 'x') + "\", \"completion\": \"b\"}\n");
  c.max_length = 64;
  expect_error(c, "long.jsonl:1: the prompt alone", "long-prompt");
  c = config;
  c.target_modules = "q_proj,qkv_proj";
  expect_error(c, "unknown target module 'qkv_proj'", "target");
  c = config;
  c.model = (root / "no-such-model").string();
  expect_error(c, "no-such-model", "model");
}

}  // TEST_SUITE

TEST_SUITE("plan_accuracy") {

// The planner's promise: for the runs that train in CI, each category's planned bytes are within
// 10% of the memory ledger's measured peak, and so is the total.
TEST_CASE("plan: every category within 10% of the measured peak (LoRA, QLoRA, full; with and without checkpointing)") {
  struct Case {
    const char* name;
    spec::Method method;
    bool checkpointing;
    const char* modules_to_save = "";  // PEFT's extras: whole fp32 modules, or a few embedding rows
    const char* token_indices = "";
    spec::Optimizer optim = spec::Optimizer::adamw;
    const char* precision = "";  // bf16, fp16, pure-bf16 (16-bit weights with or without fp32 masters)
    kernels::WeightFormat qat = kernels::WeightFormat::f32;  // --qat: the fq(W) scratch
  };
  using spec::Method;
  for (Case c :
       {Case{"lora", Method::lora, false}, Case{"lora-ckpt", Method::lora, true}, Case{"qlora", Method::qlora, false},
        Case{"qlora-ckpt", Method::qlora, true}, Case{"full", Method::full, false},
        Case{"full-ckpt", Method::full, true},
        Case{"qlora-modules-to-save", Method::qlora, false, "embed_tokens,lm_head"},
        Case{"lora-trainable-tokens", Method::lora, false, "", "3,17,40"}, Case{"gguf-q8_0", Method::lora, false},
        Case{"full-adamw_8bit", Method::full, false, "", "", spec::Optimizer::adamw_8bit},
        Case{"lora-paged_adamw_8bit", Method::lora, false, "", "", spec::Optimizer::paged_adamw_8bit},
        Case{"lora-adafactor", Method::lora, false, "", "", spec::Optimizer::adafactor},
        Case{"full-adafactor", Method::full, false, "", "", spec::Optimizer::adafactor},
        Case{"full-bf16", Method::full, false, "", "", spec::Optimizer::adamw, "bf16"},
        Case{"full-fp16-ckpt", Method::full, true, "", "", spec::Optimizer::adamw, "fp16"},
        Case{"full-pure-bf16", Method::full, false, "", "", spec::Optimizer::adamw, "pure-bf16"},
        Case{"qlora-qat-int4", Method::qlora, false, "", "", spec::Optimizer::adamw, "",
             kernels::WeightFormat::int4}}) {
    train::TrainConfig config = tiny_config(std::string("plan-") + c.name);
    config.method = c.method;
    config.gradient_checkpointing = c.checkpointing;
    config.modules_to_save = c.modules_to_save;
    config.trainable_token_indices = c.token_indices;
    config.optim = c.optim;
    config.bf16 = std::string(c.precision).find("bf16") != std::string::npos;
    config.fp16 = std::string(c.precision) == "fp16";
    config.pure_bf16 = std::string(c.precision) == "pure-bf16";
    config.qat = c.qat;
    config.max_steps = 2;
    if (std::string(c.name) == "gguf-q8_0") {  // a GGUF base kept in its Q8_0 blocks (--quant gguf)
      config.model = (test::source_dir() / "tests/data/gguf/tiny_llama.q8_0.gguf").string();
      config.data = (test::source_dir() / "tests/data/tokenizers/corpus.jsonl").string();
    }
    train::TrainSummary summary = train::train(config);
    for (size_t i = 0; i < vk::category_count; i++) {
      auto category = vk::Category(i);
      if (category == vk::Category::staging) continue;  // transfers, not part of the run's footprint
      double planned = double(summary.plan.bytes(category)),
             measured = double(summary.measured.category_peak(category));
      INFO(c.name << " " << vk::category_name(category) << ": planned " << planned << ", measured peak " << measured);
      if (planned == 0)
        CHECK(measured == 0);
      else
        CHECK(std::fabs(measured - planned) / planned <= 0.10);
    }
    if (c.optim == spec::Optimizer::adafactor) {  // rows + columns per matrix: AdamW's would be 2x the gradients
      CHECK(summary.measured.category_peak(vk::Category::optimizer_state) ==
            summary.plan.bytes(vk::Category::optimizer_state));
      CHECK(summary.plan.bytes(vk::Category::optimizer_state) * 2 < summary.plan.bytes(vk::Category::gradients));
    } else if (c.optim != spec::Optimizer::adamw) {  // 8-bit states: the ledger holds exactly the planned bytes
      CHECK(summary.plan.settings.optimizer == spec::Optimizer::adamw_8bit);
      CHECK(summary.plan.settings.page_optimizer == spec::optimizer_is_paged(c.optim));
      CHECK(summary.measured.category_peak(vk::Category::optimizer_state) ==
            summary.plan.bytes(vk::Category::optimizer_state));
    }
    double planned_total = double(summary.plan.total_bytes());
    double measured_total = double(summary.measured.total_peak - summary.measured.category_peak(vk::Category::staging));
    INFO(c.name << " total: planned " << planned_total << ", measured " << measured_total);
    CHECK(std::fabs(measured_total - planned_total) / planned_total <= 0.10);
  }
}

}  // TEST_SUITE

TEST_SUITE("train") {

TEST_CASE("evaluate: form is JSON with every key, content every field right") {
  std::vector<std::string> keys = {"book", "chapter"};
  bool form = false, content = false;
  const std::string reference = R"( {"book": "Ge", "chapter": 1})";
  train::score_output(R"( {"book": "Ge", "chapter": 1})", reference, keys, form, content);
  CHECK(form);
  CHECK(content);
  train::score_output(R"({"chapter": 1, "book": "Ge"}
and more text)",
                      reference, keys, form, content);
  CHECK(form);  // key order and a continuation after the first line do not matter
  CHECK(content);
  size_t fields = 9;
  std::vector<bool> key_right;
  train::score_output(R"( {"book": "Ex", "chapter": 1})", reference, keys, form, content, &fields, &key_right);
  CHECK(form);
  CHECK_FALSE(content);
  CHECK(fields == 1);
  CHECK(key_right == std::vector<bool>{false, true});  // which field was wrong: the book
  train::score_output(R"( {"book": "Ge"})", reference, keys, form, content, &fields);
  CHECK_FALSE(form);
  CHECK(fields == 1);  // a field right counts even when the record lacks a key
  train::score_output(R"( {"book": "Ge", "chapter": "1"})", reference, keys, form, content, &fields);
  CHECK(fields == 1);  // "1" is not 1
  train::score_output("In the beginning God created", reference, keys, form, content, &fields, &key_right);
  CHECK_FALSE(form);
  CHECK_FALSE(content);
  CHECK(fields == 0);
  CHECK(key_right == std::vector<bool>{false, false});
  train::score_output("  yes ", "yes", {}, form, content);
  CHECK(content);
  // Without keys a one-line reference is the first line: the copy probe's model goes on to the next verse.
  train::score_output("And God said,\nGe1:4\nAnd God saw", "And God said,", {}, form, content);
  CHECK(content);
  train::score_output("And God\nsaid,", "And God", {}, form, content);
  CHECK(content);
  train::score_output("And God\nsaw", "And God\nsaid", {}, form, content);
  CHECK_FALSE(content);  // a multi-line reference is the whole output
  train::score_output("And God\nsaid", "And God\nsaid", {}, form, content);
  CHECK(content);
}

}  // TEST_SUITE
