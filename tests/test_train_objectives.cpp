// Every objective beyond SFT (--objective dpo, orpo, kto, distill, and --fim-rate) across the ways
// to train (issue 22 item 6): LoRA, QLoRA and full finetuning (or a clear refusal), gradient
// accumulation equal to the bigger batch, and a resumed run repeating the losses bit for bit. Tiny
// random models and 2-4 steps: the pipeline, not learning.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/trainer.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"
#include "tests/tiny_runs.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path& root() {
  static const fs::path dir = test::binary_dir() / "test-output" / "objectives";
  return dir;
}

// The data of each objective, written once under root(): `count` lines of make_line(i).
fs::path jsonl_once(const char* name, int count, const std::function<json(int)>& make_line) {
  const fs::path path = root() / name;
  if (fs::exists(path)) return path;
  fs::create_directories(root());
  std::ofstream out(path);
  for (int i = 0; i < count; i++) out << make_line(i).dump() << "\n";
  return path;
}

fs::path pairs_file() {  // TRL's preference format: prompt, chosen, rejected
  return jsonl_once("pairs.jsonl", 8, [](int i) {
    return json{{"prompt", std::to_string(i) + "+" + std::to_string(i) + "="},
                {"chosen", std::to_string(2 * i)},
                {"rejected", std::to_string(2 * i + 1)}};
  });
}

fs::path kto_file() {  // KTO's unpaired format: prompt, completion, label
  return jsonl_once("kto.jsonl", 8, [](int i) {
    return json{
        {"prompt", std::to_string(i) + "*2="}, {"completion", std::to_string(2 * i + i % 2)}, {"label", i % 2 == 0}};
  });
}

fs::path code_file() {  // plain text for FIM
  const fs::path path = root() / "code.jsonl";
  if (fs::exists(path)) return path;
  fs::create_directories(root());
  std::ofstream out(path);
  const char* snippets[] = {"def add(a, b):\n    return a + b\n", "for i in range(3):\n    print(i)\n",
                            "x = [n * n for n in range(5)]\n", "if x > 0:\n    y = x\nelse:\n    y = -x\n"};
  for (int i = 0; i < 16; i++) out << json{{"text", snippets[i % 4]}}.dump() << "\n";
  return path;
}

// A short run of `objective` ("fim": sft with --fim-rate 0.5) with `method` on its data, batch 4.
train::TrainConfig objective_config(const std::string& objective, spec::Method method, const std::string& name) {
  train::TrainConfig c = test::tiny_random_lora_config(root(), "objectives-" + name);
  c.method = method;
  c.max_steps = 2;
  c.shuffle = false;
  if (objective == "fim") {
    c.model = test::fim_tiny_model(root() / "fim_model").string();
    c.data = code_file().string();
    c.fim_rate = 0.5;
    c.fim_spm_rate = 0.5;
    return c;
  }
  c.objective = objective;
  if (objective == "dpo" || objective == "orpo") c.data = pairs_file().string();
  if (objective == "kto") c.data = kto_file().string();
  if (objective == "distill") {
    test::TinyModelOptions teacher;
    teacher.hidden = 48;
    teacher.layers = 3;
    teacher.seed = 5;
    c.teacher = test::tiny_model(root() / "teacher", teacher).string();
  }
  return c;
}

// The objective's own metric in metrics.jsonl (nullptr: none).
const char* objective_metric(const std::string& objective) {
  if (objective == "distill") return "distill/kl";
  if (objective == "dpo" || objective == "orpo" || objective == "kto") return "rewards/chosen";
  return nullptr;
}

// metrics.jsonl's step lines.
std::vector<json> logged_steps(const std::string& output_dir) {
  std::vector<json> steps;
  std::ifstream in(fs::path(output_dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    json entry = json::parse(line);
    if (entry.contains("loss")) steps.push_back(entry);
  }
  return steps;
}

const char* short_method_name(spec::Method method) {
  return method == spec::Method::lora ? "lora" : method == spec::Method::qlora ? "qlora" : "full";
}

// 2 steps of `objective` with LoRA, QLoRA and full finetuning: each trains and logs its metric, or
// (DPO and KTO, whose reference is the base with the adapter off) refuses full finetuning saying why.
void check_methods(const std::string& objective) {
  for (spec::Method method : {spec::Method::lora, spec::Method::qlora, spec::Method::full}) {
    const std::string name = objective + "-" + short_method_name(method);
    CAPTURE(name);
    train::TrainConfig config = objective_config(objective, method, name);
    if (method == spec::Method::full && (objective == "dpo" || objective == "kto")) {
      const std::string message = test::user_error_of([&] { train::train(config); });
      CHECK(message.find("--method full") != std::string::npos);
      continue;
    }
    train::TrainSummary summary = train::train(config);
    CHECK(summary.steps == 2);
    CHECK(summary.plan.settings.method == method);
    const std::vector<json> steps = logged_steps(config.output_dir);
    REQUIRE(steps.size() == 2);
    for (const json& step : steps) {
      CHECK(std::isfinite(step["loss"].get<double>()));
      if (const char* metric = objective_metric(objective)) {
        REQUIRE(step.contains(metric));
        CHECK(std::isfinite(step[metric].get<double>()));
      }
    }
  }
}

// Batch 4 in one micro-batch against 2 micro-batches of 2: the same examples per step, so equal losses
// and weights up to fp32 summation order.
void check_accumulation(const std::string& objective) {
  train::TrainConfig big = objective_config(objective, spec::Method::lora, objective + "-accumulate-big");
  big.max_steps = 3;
  train::TrainConfig small = objective_config(objective, spec::Method::lora, objective + "-accumulate-small");
  small.max_steps = 3;
  small.per_device_train_batch_size = 2;
  small.gradient_accumulation_steps = 2;
  train::train(big);
  train::train(small);
  const auto big_losses = test::logged_losses(big.output_dir), small_losses = test::logged_losses(small.output_dir);
  REQUIRE(big_losses.size() == 3);
  REQUIRE(small_losses.size() == 3);
  for (size_t i = 0; i < 3; i++) {
    INFO(objective << " step " << i + 1 << ": batch 4 " << big_losses[i] << ", 2 x 2 " << small_losses[i]);
    CHECK(small_losses[i] == doctest::Approx(big_losses[i]).epsilon(1e-5));
  }
  const double difference = test::relative_weight_difference(big.output_dir, small.output_dir);
  INFO(objective << ": relative weight difference " << difference);
  CHECK(difference < 1e-4);
}

void check_objective_resume(const std::string& objective) {
  train::TrainConfig config = objective_config(objective, spec::Method::lora, objective + "-resume");
  config.max_steps = 4;
  config.shuffle = true;  // the data order must resume too
  test::check_resume(config, 2, 2);
}

}  // namespace

TEST_SUITE("train_objectives") {

TEST_CASE("objectives: dpo with lora and qlora; full finetuning refused (the reference is the base)") {
  check_methods("dpo");
}
TEST_CASE("objectives: orpo with lora, qlora and full finetuning") { check_methods("orpo"); }
TEST_CASE("objectives: kto with lora and qlora; full finetuning refused") { check_methods("kto"); }
TEST_CASE("objectives: distill with lora, qlora and full finetuning") { check_methods("distill"); }
TEST_CASE("objectives: fim with lora, qlora and full finetuning") { check_methods("fim"); }

TEST_CASE("objectives: accumulated micro-batches equal the bigger batch (dpo, distill, fim)") {
  // KTO and ORPO are left out by design: KTO estimates its KL term from the other examples of each
  // micro-batch and ORPO averages its NLL over each micro-batch's chosen tokens, as TRL does (HF Trainer
  // scales each micro-batch's loss by 1/accumulation steps), so 2 x 2 differs from 4 x 1 there; the
  // train_preference suite matches TRL's accumulated gradients (accum.* of trl.golden.bin).
  for (const char* objective : {"dpo", "distill", "fim"}) check_accumulation(objective);
}

TEST_CASE("objectives: --prompt-loss-weight: dpo, orpo, kto and fim refuse a value but the default") {
  for (const char* objective : {"dpo", "orpo", "kto", "fim"}) {
    CAPTURE(objective);
    train::TrainConfig config = objective_config(objective, spec::Method::lora, std::string("plw-") + objective);
    CHECK_NOTHROW(train::validate(config));  // the default 0.1, silently
    config.prompt_loss_weight = 0.5;
    const std::string message = test::user_error_of([&] { train::validate(config); });
    CHECK(message.find("--prompt-loss-weight") != std::string::npos);
    CHECK(message.find(objective == std::string("fim") ? "--fim-rate" : "--objective") != std::string::npos);
  }
}

TEST_CASE("objectives: distill weighs prompt tokens by --prompt-loss-weight, in its CE and KL terms") {
  // Step 1 (the adapter's B is zero, so the student is the base): distill/ce at weight w is the sft
  // loss at w, and both parts change with w.
  auto step_one = [](const std::string& objective, double weight) {
    train::TrainConfig config =
        objective_config(objective, spec::Method::lora, "plw-" + objective + "-" + std::to_string(weight));
    config.max_steps = 1;
    config.per_device_train_batch_size = 2;
    config.max_length = 48;
    config.prompt_loss_weight = weight;
    train::train(config);
    const std::vector<json> steps = logged_steps(config.output_dir);
    REQUIRE(steps.size() == 1);
    return steps[0];
  };
  const json distill_none = step_one("distill", 0), distill_full = step_one("distill", 1),
             sft_none = step_one("sft", 0);
  const double ce_none = distill_none["distill/ce"].get<double>(), ce_full = distill_full["distill/ce"].get<double>();
  const double kl_none = distill_none["distill/kl"].get<double>(), kl_full = distill_full["distill/kl"].get<double>();
  const double sft_loss = sft_none["loss"].get<double>();
  INFO("distill/ce " << ce_none << " (w 0) " << ce_full << " (w 1), sft loss (w 0) " << sft_loss << "; distill/kl "
                     << kl_none << " (w 0) " << kl_full << " (w 1)");
  CHECK(ce_none == doctest::Approx(sft_loss).epsilon(1e-5));
  // A random model's CE is near ln(vocab) on prompt and answer tokens alike: 1e-5 is far above rounding.
  CHECK(std::fabs(ce_full - ce_none) > 1e-5 * ce_none);
  CHECK(std::fabs(kl_full - kl_none) > 1e-3 * kl_none);
}

TEST_CASE("objectives: a resumed run repeats the losses bit for bit (dpo, orpo, kto, distill, fim)") {
  for (const char* objective : {"dpo", "orpo", "kto", "distill", "fim"}) {
    CAPTURE(objective);
    check_objective_resume(objective);
  }
}

}  // TEST_SUITE
