// `vktune sweep`: trial expansion (grid order, seeded random draws), and a real sweep over lr x r
// on the bundled base (examples/base) where the planner skips the trial that cannot fit, the best
// config YAML reloads to the best trial's flags, and a crashed sweep resumes without rerunning.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/sweep.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The first `lines` lines of `from`, written to `to` (tiny data keeps each trial near a second).
void head_lines(const fs::path& from, const fs::path& to, int lines) {
  std::ifstream in(from);
  std::ofstream out(to);
  std::string line;
  for (int i = 0; i < lines && std::getline(in, line); i++) out << line << "\n";
}

// examples/sweep/lr_r.yaml with absolute paths, tiny training data and its own folder.
fs::path write_lr_r_sweep(const fs::path& dir) {
  const fs::path root = test::source_dir();
  head_lines(root / "examples/demo/train.jsonl", dir / "train.jsonl", 48);
  std::string text = read_text_file(root / "examples/sweep/lr_r.yaml");
  auto replace = [&](const std::string& from, const std::string& to) {
    size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    for (; at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
  };
  replace("examples/base", (root / "examples/base").string());
  replace("examples/demo/train.jsonl", (dir / "train.jsonl").string());
  replace("examples/sweep/eval16.jsonl", (root / "examples/sweep/eval16.jsonl").string());
  replace("build/sweep-lr-r", (dir / "sweep").string());
  write_file_atomically(dir / "lr_r.yaml", text);
  return dir / "lr_r.yaml";
}

double final_eval_loss(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line;
  double eval_loss = -1;
  while (std::getline(in, line))
    if (json j = json::parse(line); j.contains("eval_loss")) eval_loss = j["eval_loss"];
  return eval_loss;
}

}  // namespace

TEST_SUITE("sweep") {

TEST_CASE("sweep: grid is the product in order, random draws are seeded and inside their ranges") {
  fs::path dir = test::temp_dir("sweep-expand");
  write_file_atomically(dir / "grid.yaml",
                        "output_dir: out\ntrain: {model: m, data: d.jsonl}\nobjective: train_loss\n"
                        "parameters:\n  learning_rate: [1e-4, 3e-4]\n  lora_r: {values: [4, 8, 16]}\n"
                        "  target_modules: {values: [[q_proj, v_proj], all-linear]}\nbudget: {steps: 7}\n");
  train::SweepSpec grid = train::load_sweep_spec(dir / "grid.yaml");
  auto trials = train::plan_trials(grid);
  REQUIRE(trials.size() == 12);
  CHECK(trials[0].flags[0].second == "1e-4");
  CHECK(trials[0].flags[2].second == "q_proj,v_proj");
  CHECK(trials[1].flags[2].second == "all-linear");  // the last parameter changes fastest
  CHECK(trials[2].flags[1].second == "8");
  CHECK(trials[11].config.lora_r == 16);
  CHECK(trials[11].config.learning_rate == doctest::Approx(3e-4));
  CHECK(trials[11].config.max_steps == 7);
  CHECK(trials[11].config.output_dir == (fs::path("out") / "trial-012").string());

  write_file_atomically(dir / "random.yaml",
                        "output_dir: out\ntrain: {model: m, data: d.jsonl}\nobjective: train_loss\nmethod: random\n"
                        "trials: 40\nseed: 5\nparameters:\n"
                        "  learning_rate: {distribution: log_uniform, min: 1e-6, max: 1e-2}\n"
                        "  lora_alpha: {distribution: int_uniform, min: 2, max: 5}\n");
  train::SweepSpec random = train::load_sweep_spec(dir / "random.yaml");
  auto first = train::plan_trials(random), again = train::plan_trials(random);
  REQUIRE(first.size() == 40);
  std::set<double> alphas;
  int below_1e4 = 0;
  for (size_t i = 0; i < first.size(); i++) {
    CHECK(first[i].flags == again[i].flags);  // seeded: the same trials every time
    double lr = first[i].config.learning_rate;
    CHECK(lr >= 1e-6);
    CHECK(lr <= 1e-2);
    below_1e4 += lr < 1e-4;
    alphas.insert(first[i].config.lora_alpha);
  }
  CHECK(alphas == std::set<double>{2, 3, 4, 5});
  // Log-uniform: half of the four decades lie below 1e-4, so about half the draws do.
  CHECK(below_1e4 > 10);
  CHECK(below_1e4 < 30);
  random.seed = 6;
  CHECK(train::plan_trials(random)[0].flags != first[0].flags);

  write_file_atomically(dir / "bad.yaml",
                        "train: {model: m, data: d}\nobjective: train_loss\nparameters:\n"
                        "  learning_rate: [1e-4]\n  lora_rank: [4]\n");
  CHECK_THROWS_WITH_AS(train::load_sweep_spec(dir / "bad.yaml"),
                       doctest::Contains("bad.yaml:5: unknown train option 'lora_rank'"), UserError);
  write_file_atomically(dir / "bad_value.yaml",
                        "train: {model: m, data: d}\nobjective: train_loss\nparameters:\n"
                        "  lora_r: [4, eight]\n");
  CHECK_THROWS_WITH_AS(train::load_sweep_spec(dir / "bad_value.yaml"),
                       doctest::Contains("bad_value.yaml:4: --lora-r expects an integer, got 'eight'"), UserError);
  write_file_atomically(dir / "bad_kind.yaml",
                        "train: {model: m, data: d}\nobjective: train_loss\nmethod: random\n"
                        "trials: 2\nparameters:\n  lora_r: {distribution: uniform, min: 1, max: 9}\n");
  CHECK_THROWS_WITH_AS(train::load_sweep_spec(dir / "bad_kind.yaml"),
                       doctest::Contains("bad_kind.yaml:6: 'lora_r' does not take a real number"), UserError);
}

TEST_CASE("sweep: lr x r on examples/base skips what cannot fit, picks the best, resumes after a crash") {
  fs::path dir = test::temp_dir("sweep-lr-r");
  train::SweepSpec spec = train::load_sweep_spec(write_lr_r_sweep(dir));
  REQUIRE(spec.method == train::SweepMethod::random);
  REQUIRE(spec.trials == 6);

  // First run: "crashes" after the third trial is persisted.
  std::vector<int64_t> ran;
  train::SweepHooks crash;
  crash.after_trial = [&](const train::TrialResult& trial) {
    ran.push_back(trial.index);
    if (trial.index == 3) throw std::runtime_error("simulated crash");
  };
  CHECK_THROWS_WITH(train::run_sweep(spec, crash), "simulated crash");
  CHECK(ran == std::vector<int64_t>{1, 2, 3});
  json state = json::parse(read_text_file(spec.output_dir / "sweep_state.json"));
  CHECK(state["trials"].size() == 3);

  // Second run: trials 1-3 come from sweep_state.json, only 4-6 run.
  ran.clear();
  train::SweepHooks count;
  count.after_trial = [&](const train::TrialResult& trial) { ran.push_back(trial.index); };
  train::SweepResult result = train::run_sweep(spec, count);
  CHECK(ran == std::vector<int64_t>{4, 5, 6});
  CHECK(result.reused == 3);
  REQUIRE(result.trials.size() == 6);

  // Exactly one trial (r = 64) is skipped, with the planner's verdict against 56 MiB.
  int skipped = 0, finished = 0;
  for (const auto& trial : result.trials) {
    INFO("trial " << trial.index << ": " << trial.reason);
    if (trial.status == train::TrialStatus::skipped) {
      skipped++;
      CHECK(trial.flags[1].second == "64");
      CHECK(trial.reason.find("planner: needs ") == 0);
      CHECK(trial.reason.find("of 56.00 MiB") != std::string::npos);
      CHECK(trial.planned_bytes > 56ull << 20);
      CHECK_FALSE(fs::exists(trial.output));  // never started
    } else {
      REQUIRE(trial.status == train::TrialStatus::finished);
      finished++;
      CHECK(trial.planned_bytes < 56ull << 20);
      CHECK(trial.steps == 4);
      // The objective is the trial's own final eval line.
      CHECK(trial.objective == doctest::Approx(final_eval_loss(trial.output)).epsilon(1e-6));
    }
  }
  CHECK(skipped == 1);
  CHECK(finished == 5);
  REQUIRE(result.best == size_t(0));
  for (size_t i = 1; i < 5; i++) CHECK(result.trials[i - 1].objective <= result.trials[i].objective);
  // Four steps move the loss: the trials differ, so the choice means something.
  CHECK(result.trials[4].objective - result.trials[0].objective > 0.01);

  // best_config.yaml loads back into the best trial's configuration.
  const train::TrialResult& best = result.trials[0];
  train::TrainConfig reloaded;
  train::apply_yaml_file(reloaded, result.best_yaml.string());
  train::TrainConfig expected = train::plan_trials(spec)[size_t(best.index - 1)].config;
  CHECK(reloaded.learning_rate == expected.learning_rate);
  CHECK(reloaded.lora_r == expected.lora_r);
  CHECK(std::to_string(reloaded.lora_r) == best.flags[1].second);
  expected.output_dir.clear();
  expected.headless = false;  // run control, left to the user
  CHECK(train::to_json(reloaded) == train::to_json(expected));

  std::string csv = read_text_file(result.csv);
  CHECK(csv.find("rank,trial,status,eval_loss,learning_rate,lora_r") == 0);
  CHECK(csv.find("\n1," + std::to_string(best.index) + ",finished,") != std::string::npos);

  // A third run finds everything done.
  ran.clear();
  result = train::run_sweep(spec, count);
  CHECK(ran.empty());
  CHECK(result.reused == 6);
}


}  // TEST_SUITE

// Apart from "sweep" so that the done-when sweep above stays one short ctest entry.
TEST_SUITE("sweep_resume") {

TEST_CASE("vktune sweep: killed mid-trial, the rerun continues that trial from its checkpoint") {
  fs::path dir = test::temp_dir("sweep-killed");
  const fs::path root = test::source_dir();
  head_lines(root / "examples/demo/train.jsonl", dir / "train.jsonl", 24);
  write_file_atomically(dir / "sweep.yaml", "output_dir: " + (dir / "sweep").string() +
                                                "\nobjective: train_loss\nbudget: {steps: 4}\n"
                                                "train:\n  model: " +
                                                (root / "examples/base").string() +
                                                "\n  data: " + (dir / "train.jsonl").string() +
                                                "\n  max_length: 64\n  per_device_train_batch_size: 2\n"
                                                "  logging_steps: 1\n  save_steps: 0\n"
                                                "parameters:\n  learning_rate: [1e-4, 3e-4]\n");
  const std::string sweep = (test::binary_dir() / "vktune").string() + " sweep " + (dir / "sweep.yaml").string();
  // SIGTERM after step 2 of the first trial: it saves checkpoint-2 and the sweep stops, unrecorded.
  // Named results, not structured bindings: clang 14 cannot capture a binding in INFO.
  const auto killed = test::run_command("VKT_TEST_RAISE_AT_STEP=2 VKT_TEST_RAISE_SIGNAL=TERM " + sweep);
  const int killed_status = killed.first;
  const std::string killed_output = killed.second;
  INFO(killed_output);
  CHECK(killed_status == 128 + 15);
  CHECK(killed_output.find("run the same command again") != std::string::npos);
  CHECK(fs::exists(dir / "sweep/trial-001/checkpoint-2"));
  CHECK_FALSE(fs::exists(dir / "sweep/trial-002"));
  const auto resumed = test::run_command(sweep);
  const int status = resumed.first;
  const std::string output = resumed.second;
  INFO(output);
  CHECK(status == 0);
  CHECK(output.find("resumed from") != std::string::npos);
  CHECK(output.find("at step 2") != std::string::npos);
  json state = json::parse(read_text_file(dir / "sweep/sweep_state.json"));
  REQUIRE(state["trials"].size() == 2);
  for (const auto& trial : state["trials"]) {
    CHECK(trial["status"] == "finished");
    CHECK(trial["steps"] == 4);
  }
  // The resumed trial logged each of its 4 steps once.
  int steps = 0;
  std::ifstream metrics(dir / "sweep/trial-001/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) steps += json::parse(line).contains("loss");
  CHECK(steps == 4);
  CHECK(fs::exists(dir / "sweep/best_config.yaml"));
}

TEST_CASE("sweep: a minutes budget stops a trial and scores its checkpoint") {
  fs::path dir = test::temp_dir("sweep-minutes");
  train::SweepSpec spec = train::load_sweep_spec(write_lr_r_sweep(dir));
  spec.method = train::SweepMethod::grid;
  spec.parameters = {spec.parameters[1]};
  spec.parameters[0].values = {"4"};
  spec.budget_steps = 100000;
  spec.budget_minutes = 0.01;  // 0.6 s: a few steps on lavapipe
  train::SweepResult result = train::run_sweep(spec);
  REQUIRE(result.trials.size() == 1);
  const train::TrialResult& trial = result.trials[0];
  INFO(trial.reason);
  CHECK(trial.status == train::TrialStatus::finished);
  CHECK(trial.reason.find("time budget: stopped after ") == 0);
  CHECK(trial.steps >= 1);
  CHECK(trial.steps < 100000);
  // Scored on the checkpoint the stop wrote: a loss near the base's (~9.9 on these verses).
  CHECK(fs::exists(fs::path(trial.output) / ("checkpoint-" + std::to_string(trial.steps))));
  CHECK(trial.objective > 5);
  CHECK(trial.objective < 12);
}

}  // TEST_SUITE
