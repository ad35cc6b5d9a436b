// Fill-in-the-middle examples (engine/train/fim.hpp): bigcode's permute() on fixed seeds against
// tests/reference/fim_golden.py's reimplementation (tests/data/fim/fim_golden.json), the FIM tokens'
// lookup and its errors. The end-to-end run is in tests/test_train_fim_e2e.cpp.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/fim.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::train;

namespace {
TokenizerHooks byte_tokenizer() {  // the golden's tokenizer: UTF-8 bytes + 3
  TokenizerHooks hooks;
  hooks.encode = [](const std::string& text) {
    std::vector<uint32_t> ids;
    for (unsigned char byte : text) ids.push_back(byte + 3u);
    return ids;
  };
  return hooks;
}
}  // namespace

TEST_SUITE("train") {

TEST_CASE("fim: bigcode's permute() on fixed seeds matches the Python reimplementation (PSM and SPM)") {
  std::ifstream file(test::source_dir() / "tests/data/fim/fim_golden.json");
  const nlohmann::json golden = nlohmann::json::parse(file);
  const TokenizerHooks tokenizer = byte_tokenizer();
  const FimTokenIds ids{0, 1, 2};
  size_t compared = 0, applied = 0, spm = 0;
  for (const auto& run : golden["runs"]) {
    FimRandom random(run["seed"].get<uint64_t>());
    const double rate = run["fim_rate"], spm_rate = run["fim_spm_rate"];
    for (const auto& example : run["examples"]) {
      const std::string text = example["text"];
      const FimSplit split = fim_split(text, random, rate, spm_rate);
      CAPTURE(text);
      CHECK(split.applied == example["applied"].get<bool>());
      CHECK(split.spm == example["spm"].get<bool>());
      CHECK(split.prefix == example["prefix"].get<std::string>());
      CHECK(split.middle == example["middle"].get<std::string>());
      CHECK(split.suffix == example["suffix"].get<std::string>());
      CHECK(fim_token_ids(split, tokenizer, ids) == example["ids"].get<std::vector<uint32_t>>());
      compared++;
      applied += split.applied;
      spm += split.spm;
    }
  }
  CHECK(compared == 90);
  CHECK(applied > 20);  // both orders and untouched texts are covered
  CHECK(spm > 10);
  CHECK(applied - spm > 10);
}

TEST_CASE("fim: examples are [BOS] + the FIM sequence + EOS, every token trained; other formats refused") {
  TokenizerHooks tokenizer = byte_tokenizer();
  tokenizer.add_bos = true;
  tokenizer.bos_id = 300;
  tokenizer.eos_ids = {301};
  ParsedExample example;
  example.segments.push_back({"abcdef", true});
  example.line = 1;
  FimSettings settings;
  settings.rate = 1.0;
  settings.spm_rate = 0.0;
  settings.seed = 3;
  settings.ids = {0, 1, 2};
  TokenizeReport report;
  auto examples = fim_tokenize_examples({example}, tokenizer, settings, 64, "data.jsonl", report);
  REQUIRE(examples.size() == 1);
  const auto& tokens = examples[0].ids;
  REQUIRE(tokens.size() == 6 + 3 + 2);
  CHECK(tokens.front() == 300);
  CHECK(tokens[1] == 0);  // PSM starts with <fim_prefix>
  CHECK(tokens.back() == 301);
  CHECK(examples[0].weights[0] == 0.0f);
  for (size_t i = 1; i < tokens.size(); i++) CHECK(examples[0].weights[i] == 1.0f);
  example.format = ExampleFormat::prompt_completion;
  example.line = 7;
  try {
    fim_tokenize_examples({example}, tokenizer, settings, 64, "data.jsonl", report);
    FAIL("a prompt/completion example accepted");
  } catch (const UserError& error) {
    CHECK(std::string(error.what()).find("data.jsonl:7") != std::string::npos);
  }
}
}

// --- End to end on a tiny Llama with the FIM tokens (test::fim_tiny_model) -----------------------
#include <nlohmann/json.hpp>

#include "engine/model/init.hpp"
#include "engine/text/trainer.hpp"
#include "engine/train/trainer.hpp"
#include "tests/tiny_model.hpp"
#include "tests/tiny_runs.hpp"


TEST_SUITE("train") {

TEST_CASE("fim: a short LoRA run on FIM examples of a tiny model with FIM tokens; refused without them") {
  const std::filesystem::path root = test::temp_dir("fim_e2e");
  const std::filesystem::path data = root / "code.jsonl";
  {
    std::ofstream out(data);
    const char* snippets[] = {"def add(a, b):\n    return a + b\n", "for i in range(3):\n    print(i)\n",
                              "x = [n * n for n in range(5)]\n", "if x > 0:\n    y = x\nelse:\n    y = -x\n"};
    for (int i = 0; i < 16; i++) out << nlohmann::json{{"text", snippets[i % 4]}}.dump() << "\n";
  }
  train::TrainConfig config = test::tiny_random_lora_config(root, "fim_e2e_out");
  config.model = test::fim_tiny_model(root / "fim_model").string();
  config.data = data.string();
  config.max_steps = 4;
  config.fim_rate = 0.5;
  config.fim_spm_rate = 0.5;
  train::TrainSummary summary = train::train(config);
  CHECK(summary.steps == 4);
  CHECK(std::isfinite(summary.last_loss));
  // The same data on a tokenizer without FIM tokens: the error names its tokenizer.json.
  config.model = test::tiny_model(root / "plain_model").string();
  config.output_dir = test::temp_dir("fim_e2e_out_plain").string();
  try {
    train::train(config);
    FAIL("a tokenizer without FIM tokens accepted");
  } catch (const UserError& error) {
    CHECK(std::string(error.what()).find("tokenizer.json") != std::string::npos);
    CHECK(std::string(error.what()).find("<fim_prefix>") != std::string::npos);
  }
}

TEST_CASE("fim: vktune generate --suffix fills the middle with the FIM tokens; refused without them") {
  const std::filesystem::path root = test::temp_dir("fim_generate");
  const std::string model = test::fim_tiny_model(test::temp_dir("fim_generate_model")).string();
  const std::string out = (root / "out.txt").string(), vktune = (test::binary_dir() / "vktune").string();
  auto run = [&](const std::string& arguments) {  // the exit status; stdout and stderr in `out`
    const int status = std::system(
        ("ASAN_OPTIONS=detect_leaks=0 " + vktune + " generate " + arguments + " >" + out + " 2>&1").c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  CHECK(run("--model " + model + " --prompt 'def f(' --suffix 'return x' --max-new-tokens 4") == 0);
  const std::string printed = read_text_file(out);
  CHECK(printed.find("def f(") != std::string::npos);
  CHECK(printed.find("return x") != std::string::npos);
  CHECK(run("--model " + test::tiny_model(root / "plain").string() + " --prompt a --suffix b") != 0);
  CHECK(read_text_file(out).find("has no FIM tokens") != std::string::npos);
}
}
