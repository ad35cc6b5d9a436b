// HF Trainer's early stopping and load_best_model_at_end: the tracker's decisions (patience,
// threshold, direction, which states are kept), the flag rules, pruning that keeps the best
// checkpoint, and a deliberately overfitting run that stops early and writes the best checkpoint's
// adapter byte for byte; and the evaluations they rest on run in eval mode (no dropout), as HF's.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/checkpoint.hpp"
#include "engine/train/early_stopping.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

train::BestModelSettings settings_with(int64_t patience, double threshold, bool greater = false) {
  train::BestModelSettings s;
  s.patience = patience;
  s.threshold = threshold;
  s.greater_is_better = greater;
  s.load_best = true;
  return s;
}

// Writes prompt/completion lines "Q: THING?" -> " The answer is COLOR." with the given colors.
fs::path colors_dataset(const fs::path& path, const std::vector<std::string>& colors) {
  const char* things[] = {"sky", "sea", "leaf", "sun"};
  std::ofstream out(path);
  for (size_t i = 0; i < colors.size(); i++)
    out << json{{"prompt", std::string("Q: ") + things[i % 4] + "?"},
                {"completion", " The answer is " + colors[i] + "."}}
               .dump()
        << "\n";
  return path;
}

std::string file_bytes(const fs::path& path) { return read_text_file(path); }

}  // namespace

TEST_SUITE("train") {

TEST_CASE("early stopping: patience counts evaluations not better by more than the threshold (HF semantics)") {
  train::BestModelTracker tracker(settings_with(2, 0.02));
  CHECK_FALSE(tracker.observe(1, 1.0, true));   // first evaluation: the best so far
  CHECK_FALSE(tracker.observe(2, 0.9, false));  // better by 0.1 > 0.02: patience reset
  CHECK(tracker.state().patience_counter == 0);
  CHECK_FALSE(tracker.observe(3, 0.95, true));  // worse: 1
  CHECK(tracker.state().patience_counter == 1);
  CHECK(tracker.observe(4, 0.89, false));  // better by 0.01 <= 0.02: 2 = patience, stop
  CHECK(tracker.state().patience_counter == 2);
  // The best metric still moves on a strict improvement (HF's _determine_best_metric has no threshold).
  CHECK(*tracker.state().best_metric == doctest::Approx(0.89));
  CHECK(tracker.state().best_step == 4);
  // The best kept state is the best of the kept evaluations only (steps 1 and 3).
  CHECK(tracker.state().best_kept_step == 3);
  CHECK(tracker.state().best_kept_metric == doctest::Approx(0.95).epsilon(1e-12));
  tracker.keep(4, 0.89);  // the run ends with step 4's weights: they are kept after all
  CHECK(tracker.state().best_kept_step == 4);
}

TEST_CASE("early stopping: greater is better, and an equal value is no improvement") {
  train::BestModelTracker tracker(settings_with(1, 0, true));
  CHECK_FALSE(tracker.observe(10, 0.5, true));
  CHECK_FALSE(tracker.observe(20, 0.6, true));
  CHECK(tracker.observe(30, 0.6, true));  // equal: not better, patience 1 reached
  CHECK(tracker.state().best_kept_step == 20);
  train::BestModelTracker off(settings_with(0, 0));
  for (int step = 1; step <= 5; step++) CHECK_FALSE(off.observe(step, double(step), true));  // patience 0: never
  CHECK(off.state().best_kept_step == 1);
}

TEST_CASE("early stopping: flag rules as HF's TrainingArguments, with a clear error") {
  train::TrainConfig c;
  c.model = c.data = c.output_dir = "x";
  c.load_best_model_at_end = true;
  CHECK_THROWS_WITH_AS(train::validate(c), doctest::Contains("no --eval-data"), UserError);
  c.eval_data = "eval.jsonl";
  CHECK_THROWS_WITH_AS(train::validate(c), doctest::Contains("--eval-steps is 0"), UserError);
  c.eval_steps = 4;
  c.save_steps = 10;
  CHECK_THROWS_WITH_AS(train::validate(c), doctest::Contains("round multiple of the evaluation steps"), UserError);
  c.save_steps = 8;
  CHECK_NOTHROW(train::validate(c));
  c.early_stopping_patience = -1;
  CHECK_THROWS_AS(train::validate(c), UserError);
  c.early_stopping_patience = 3;
  c.load_best_model_at_end = false;
  c.save_steps = 10;  // early stopping alone needs no checkpoints at eval steps
  CHECK_NOTHROW(train::validate(c));
  c.metric_for_best_model = "loss";
  CHECK(train::best_model_settings(c).metric == "eval_loss");
  c.metric_for_best_model = "eval_general_loss";
  CHECK(train::best_model_settings(c).metric == "eval_general_loss");
}

TEST_CASE("early stopping: --save-total-limit never removes the best checkpoint") {
  fs::path dir = test::temp_dir("prune-best");
  for (int step : {5, 10, 15, 20}) fs::create_directories(dir / ("checkpoint-" + std::to_string(step)));
  train::prune_checkpoints(dir, 2, 5);  // the best (5) counts as the newest: 5 and 20 stay
  CHECK(fs::exists(dir / "checkpoint-5"));
  CHECK(fs::exists(dir / "checkpoint-20"));
  CHECK_FALSE(fs::exists(dir / "checkpoint-10"));
  CHECK_FALSE(fs::exists(dir / "checkpoint-15"));
  fs::create_directories(dir / "checkpoint-25");
  train::prune_checkpoints(dir, 1, 5);  // limit 1 keeps the latest beside the best (HF)
  CHECK(fs::exists(dir / "checkpoint-5"));
  CHECK(fs::exists(dir / "checkpoint-25"));
  CHECK_FALSE(fs::exists(dir / "checkpoint-20"));
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

TEST_CASE("early stopping: an overfitting run stops early and its adapter is the best checkpoint's, byte for byte") {
  const fs::path root = test::binary_dir() / "test-output" / "e2e";
  train::TrainConfig config = test::tiny_lora_config(root, "e2e-early-stopping");
  // Four training examples and an evaluation set that pairs the same questions with other answers:
  // the template is learnt first (eval loss falls), then the training answers are memorised at a
  // high learning rate (eval loss rises).
  config.data = colors_dataset(root / "overfit-train.jsonl", {"red", "blue", "green", "gold"}).string();
  config.eval_data = colors_dataset(root / "overfit-eval.jsonl", {"gold", "red", "blue", "green"}).string();
  config.learning_rate = 3e-2;
  config.max_steps = 200;
  config.eval_steps = 5;
  config.save_steps = 5;
  config.logging_steps = 5;
  config.load_best_model_at_end = true;
  config.early_stopping_patience = 3;
  train::TrainSummary summary = train::train(config);
  std::vector<std::pair<int64_t, double>> evals;
  std::ifstream in(fs::path(config.output_dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    if (j.contains("eval_loss")) evals.push_back({j["step"], j["eval_loss"]});
  }
  REQUIRE(!evals.empty());
  MESSAGE("stopped at step " << summary.steps << " of 200; best checkpoint " << summary.best_checkpoint_step
                             << "; eval losses " << evals.front().second << " (step " << evals.front().first << ") ... "
                             << evals.back().second << " (step " << evals.back().first << ")");
  CHECK(summary.early_stopped);
  CHECK(summary.steps < 200);
  CHECK(evals.back().first == summary.steps);
  // The best is the lowest eval loss, the last three evaluations did not beat it.
  auto best = std::min_element(evals.begin(), evals.end(), [](auto& a, auto& b) { return a.second < b.second; });
  CHECK(summary.best_checkpoint_step == best->first);
  CHECK(evals.end() - best == 4);  // the best, then patience (3) evaluations without improvement
  CHECK(summary.eval_loss == doctest::Approx(best->second).epsilon(1e-12));
  const fs::path checkpoint = fs::path(config.output_dir) / ("checkpoint-" + std::to_string(best->first));
  REQUIRE(fs::exists(checkpoint / "adapter_model.safetensors"));
  CHECK(file_bytes(fs::path(config.output_dir) / "adapter_model.safetensors") ==
        file_bytes(checkpoint / "adapter_model.safetensors"));
  CHECK(file_bytes(fs::path(config.output_dir) / "adapter_config.json") ==
        file_bytes(checkpoint / "adapter_config.json"));
  // The final adapter is not the last step's weights (the run went on past the best).
  const fs::path last = fs::path(config.output_dir) / ("checkpoint-" + std::to_string(summary.steps));
  if (fs::exists(last))
    CHECK(file_bytes(fs::path(config.output_dir) / "adapter_model.safetensors") !=
          file_bytes(last / "adapter_model.safetensors"));
  json state = json::parse(read_text_file(checkpoint / "trainer_state.json"));
  CHECK(state["best_checkpoint_step"] == best->first);
}

TEST_CASE("evaluation during training runs in eval mode: with LoRA dropout, eval_loss = evaluate of the adapter") {
  // HF's Trainer evaluates under model.eval(): no dropout. A training-time evaluation that kept the
  // train-mode dropout would report a noisier loss than `vktune evaluate --loss` of the same adapter.
  const fs::path root = test::binary_dir() / "test-output" / "e2e";
  train::TrainConfig config = test::tiny_lora_config(root, "e2e-eval-mode");
  config.data = colors_dataset(root / "eval-mode-train.jsonl", {"red", "blue", "green", "gold"}).string();
  config.eval_data = colors_dataset(root / "eval-mode-eval.jsonl", {"gold", "red", "blue", "green"}).string();
  config.lora_dropout = 0.5;
  config.learning_rate = 3e-2;
  config.max_steps = 4;
  config.save_steps = 0;
  train::TrainSummary summary = train::train(config);
  train::EvalOptions options;
  options.adapter = config.output_dir;
  options.max_length = static_cast<uint32_t>(config.max_length);
  const double evaluated = train::evaluate_model(test::context(), config.model, config.eval_data, options).loss;
  options.adapter.reset();
  const double base = train::evaluate_model(test::context(), config.model, config.eval_data, options).loss;
  MESSAGE("eval_loss " << summary.eval_loss << ", evaluate --loss of the adapter " << evaluated << ", of the base "
                       << base);
  CHECK(std::abs(evaluated - base) > 1e-2);  // the adapter moved the loss: dropout on it would show
  CHECK(summary.eval_loss == doctest::Approx(evaluated).epsilon(1e-6));
}

}  // TEST_SUITE
