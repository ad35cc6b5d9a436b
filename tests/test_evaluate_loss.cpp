// `vktune evaluate --loss` run as a binary: its numbers equal the library's evaluate_model (base and
// base + adapter, any batch size) and transformers' weighted loss on examples/base (golden written
// by tests/reference/eval_loss_reference.py); flags of the other mode are refused.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/train/evaluate.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct CommandResult {
  int status = -1;
  std::string out;  // stdout only (--json must print nothing else there)
};

CommandResult run_vktune(const std::string& arguments, bool merge_stderr = false) {
  std::string command = (test::binary_dir() / "vktune").string() + " " + arguments + (merge_stderr ? " 2>&1" : "");
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) result.out.append(buffer, n);
  int status = pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

json evaluate_json(const std::string& arguments) {
  CommandResult result = run_vktune("evaluate --loss --json " + arguments);
  INFO(result.out);
  REQUIRE(result.status == 0);
  return json::parse(result.out);
}

double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

}  // namespace

TEST_SUITE("train_e2e") {

TEST_CASE("evaluate --loss: examples/base on a few lines equals transformers' weighted loss") {
  const fs::path source = test::source_dir();
  std::ifstream golden_file(source / "tests/data/eval_loss/base.golden.json");
  REQUIRE(golden_file.good());
  json golden = json::parse(golden_file);
  const std::string data = (source / "tests/data/eval_loss/base.jsonl").string();
  const std::string model = (source / "examples/base").string();
  for (int batch : {1, 4}) {  // 4: the second micro-batch is half padding
    CAPTURE(batch);
    json ours = evaluate_json("--model " + model + " --data " + data + " --per-device-eval-batch-size " +
                              std::to_string(batch));
    CHECK(ours["examples"] == golden["examples"]);
    CHECK(ours["tokens"] == golden["tokens"]);
    CHECK(relative(ours["weighted_tokens"], golden["weight_sum"]) < 1e-6);
    CHECK(relative(ours["loss"], golden["loss"]) < 1e-4);
    CHECK(relative(ours["perplexity"], golden["perplexity"]) < 1e-3);  // exp(loss): 9.2 * 1e-4 relative
    CHECK(ours["adapter"].is_null());
  }
  // Prompt tokens weighing 1 change the number (the weights reach the loss).
  json unweighted = evaluate_json("--model " + model + " --data " + data + " --prompt-loss-weight 1");
  CHECK(unweighted["weighted_tokens"].get<double>() > golden["weight_sum"].get<double>() + 10);
  CHECK(relative(unweighted["loss"], golden["loss"]) > 1e-3);
}

TEST_CASE("evaluate --loss: the binary reports what evaluate_model computes, with and without an adapter") {
  fs::path root = test::binary_dir() / "test-output" / "e2e";
  fs::create_directories(root);
  const fs::path base = test::tiny_pretrained_model(root / "base");
  const fs::path data = test::tiny_dataset(root / "eval-loss.jsonl", 11, 5);
  train::TrainConfig config;
  config.model = base.string();
  config.data = test::tiny_dataset(root / "data.jsonl", 64).string();
  config.output_dir = test::temp_dir("eval-loss-adapter").string();
  config.headless = true;
  config.max_steps = 5;
  config.per_device_train_batch_size = 4;
  config.learning_rate = 1e-2;
  config.logging_steps = 5;
  config.save_steps = 0;
  config.target_modules = "all-linear";
  config.lora_r = 4;
  train::train(config);
  const fs::path adapter = config.output_dir;

  train::EvalOptions options;
  options.batch = 3;
  train::EvalResult library_base = train::evaluate_model(test::context(), base, data, options);
  options.adapter = adapter;
  train::EvalResult library_tuned = train::evaluate_model(test::context(), base, data, options);
  const std::string common =
      "--model " + base.string() + " --data " + data.string() + " --per-device-eval-batch-size 3";
  json binary_base = evaluate_json(common);
  json binary_tuned = evaluate_json(common + " --adapter " + adapter.string());
  CHECK(binary_base["loss"].get<double>() == doctest::Approx(library_base.loss).epsilon(1e-6));
  CHECK(binary_base["tokens"] == library_base.tokens);
  CHECK(binary_base["examples"] == 11);
  CHECK(binary_base["weighted_tokens"].get<double>() == doctest::Approx(library_base.weight_sum));
  CHECK(binary_tuned["loss"].get<double>() == doctest::Approx(library_tuned.loss).epsilon(1e-6));
  CHECK(binary_tuned["adapter"] == adapter.string());
  CHECK(std::abs(library_tuned.loss - library_base.loss) > 1e-3);  // the adapter is applied
  CHECK(binary_tuned["perplexity"].get<double>() == doctest::Approx(std::exp(library_tuned.loss)).epsilon(1e-5));

  // The human-readable report names each number.
  CommandResult text = run_vktune("evaluate --loss " + common);
  CHECK(text.status == 0);
  for (const char* field : {"tokens:", "weighted tokens:", "mean loss:", "perplexity:", "time:"})
    CHECK(text.out.find(field) != std::string::npos);

  // Flags of the other mode: a clear error, exit status 1.
  CommandResult generation_flag = run_vktune("evaluate --loss " + common + " --max-new-tokens 8", true);
  CHECK(generation_flag.status == 1);
  CHECK(generation_flag.out.find("--max-new-tokens does not apply with --loss") != std::string::npos);
  CommandResult loss_flag =
      run_vktune("evaluate --model " + base.string() + " --data " + data.string() + " --json", true);
  CHECK(loss_flag.status == 1);
  CHECK(loss_flag.out.find("--json does not apply without --loss") != std::string::npos);
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

// A GGUF file with its tokenizer as --model for plan, train (QLoRA, 4 steps), evaluate (the adapter
// lowers the loss) and generate; returns the training output folder.
fs::path check_gguf_commands(const std::string& file_name) {
  const fs::path source = test::source_dir();
  const std::string model = (source / "tests/data/gguf" / file_name).string();
  const std::string data = (source / "tests/data/tokenizers/corpus.jsonl").string();
  fs::path out = test::binary_dir() / "test-output" / ("gguf-e2e-" + file_name);
  fs::remove_all(out);
  CHECK(run_vktune("plan --model " + model + " --method qlora").status == 0);
  CommandResult trained = run_vktune("train --model " + model + " --data " + data + " --output-dir " + out.string() +
                                         " --method qlora --max-steps 4 --learning-rate 1e-2",
                                     true);
  INFO(trained.out);
  REQUIRE(trained.status == 0);
  CHECK(fs::exists(out / "adapter_model.safetensors"));
  json base = evaluate_json("--model " + model + " --data " + data);
  json tuned = evaluate_json("--model " + model + " --data " + data + " --adapter " + out.string());
  CHECK(tuned["loss"].get<double>() < base["loss"].get<double>() - 1e-3);
  CHECK(run_vktune("generate --model " + model + " --prompt Hello --max-new-tokens 4").status == 0);
  return out;
}

// tests/data/gguf/tiny_llama.q8_0.gguf (llama.cpp's converter, tests/reference/gguf_model_golden.py):
// byte-level BPE tokenizer.
TEST_CASE("gguf: plan, train, evaluate and generate take a .gguf --model") {
  const fs::path source = test::source_dir(), out = check_gguf_commands("tiny_llama.q8_0.gguf");
  const std::string data = (source / "tests/data/tokenizers/corpus.jsonl").string();
  CommandResult no_tokenizer =
      run_vktune("train --model " + (source / "tests/data/gguf/llama3.f32.gguf").string() + " --data " + data +
                     " --output-dir " + (out.string() + "-none") + " --max-steps 1",
                 true);
  CHECK(no_tokenizer.status != 0);
  CHECK(no_tokenizer.out.find("has no tokenizer") != std::string::npos);
}

// tests/data/gguf/tiny_gemma3_spm.q8_0.gguf (tests/reference/gguf_spm_tokenizer_golden.py): a gemma3
// GGUF with a SentencePiece tokenizer, both as llama.cpp's converter writes them.
TEST_CASE("gguf: a Gemma 3 file with a SentencePiece tokenizer trains, evaluates and generates") {
  check_gguf_commands("tiny_gemma3_spm.q8_0.gguf");
}

// The default for a .gguf --model keeps its Q8_0 blocks on the device (--quant gguf): plan says so,
// LoRA training through the blocks lowers the evaluation loss.
TEST_CASE("gguf: LoRA trains on the GGUF's own Q8_0 blocks by default (--quant gguf)") {
  const fs::path source = test::source_dir();
  const std::string model = (source / "tests/data/gguf/tiny_llama.q8_0.gguf").string();
  const std::string data = (source / "tests/data/tokenizers/corpus.jsonl").string();
  fs::path out = test::binary_dir() / "test-output" / "gguf-blocks-e2e";
  fs::remove_all(out);
  CommandResult plan = run_vktune("plan --model " + model, true);
  INFO(plan.out);
  CHECK(plan.status == 0);
  CHECK(plan.out.find("gguf (") != std::string::npos);
  CHECK(plan.out.find("x q8_0") != std::string::npos);
  CommandResult trained = run_vktune("train --model " + model + " --data " + data + " --output-dir " + out.string() +
                                         " --max-steps 4 --learning-rate 1e-2",
                                     true);
  INFO(trained.out);
  REQUIRE(trained.status == 0);
  CHECK(trained.out.find("kept on the device as stored") != std::string::npos);
  json base = evaluate_json("--model " + model + " --data " + data);
  json tuned = evaluate_json("--model " + model + " --data " + data + " --adapter " + out.string());
  MESSAGE("LoRA on Q8_0 blocks: eval loss " << base["loss"].get<double>() << " -> " << tuned["loss"].get<double>());
  CHECK(tuned["loss"].get<double>() < base["loss"].get<double>() - 1e-3);
}

}  // TEST_SUITE
