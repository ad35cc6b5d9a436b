// Several datasets in one run: --data FILE:weight,... mixed by ratio per epoch (seeded, resumable)
// and --eval-data NAME=FILE,... logged as eval_NAME_loss each.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/base/error.hpp"
#include "engine/train/batcher.hpp"
#include "engine/train/data_mixture.hpp"
#include "engine/train/monitor.hpp"
#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<train::TokenizedExample> numbered_examples(int count) {
  std::vector<train::TokenizedExample> examples;
  for (int i = 0; i < count; i++) examples.push_back({{1, uint32_t(10 + i), 2}, {0, 1, 1}});
  return examples;
}

std::vector<json> metrics_lines(const fs::path& output_dir) {
  std::vector<json> lines;
  std::ifstream in(output_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

}  // namespace

TEST_SUITE("train") {

TEST_CASE("data mixture: --data and --eval-data lists parse, bad items are clear errors") {
  auto sources = train::parse_data_sources("task.jsonl:3,general.jsonl:0.5");
  REQUIRE(sources.size() == 2);
  CHECK(sources[0].path == "task.jsonl");
  CHECK(sources[0].weight == 3);
  CHECK(sources[1].weight == 0.5);
  CHECK(train::is_mixture(sources));
  auto plain = train::parse_data_sources("data.jsonl");
  CHECK(plain.size() == 1);
  CHECK(!train::is_mixture(plain));
  CHECK(train::is_mixture(train::parse_data_sources("data.jsonl:2")));
  CHECK_THROWS_WITH_AS(train::parse_data_sources("a.jsonl:0,b.jsonl:1"), doctest::Contains("not a positive number"),
                       UserError);
  CHECK_THROWS_WITH_AS(train::parse_data_sources("a.jsonl:1,,b.jsonl"), doctest::Contains("empty item"), UserError);

  auto sets = train::parse_eval_sets("task=t.jsonl,general=g.jsonl");
  REQUIRE(sets.size() == 2);
  CHECK(sets[0].metric() == "eval_task_loss");
  CHECK(sets[1].metric() == "eval_general_loss");
  CHECK(sets[1].path == "g.jsonl");
  CHECK(train::parse_eval_sets("eval.jsonl")[0].metric() == "eval_loss");  // a plain FILE keeps eval_loss
  CHECK(train::parse_eval_sets("").empty());
  CHECK_THROWS_WITH_AS(train::parse_eval_sets("a.jsonl,b.jsonl"), doctest::Contains("eval_loss twice"), UserError);
  CHECK_THROWS_WITH_AS(train::parse_eval_sets("x=a.jsonl,x=b.jsonl"), doctest::Contains("eval_x_loss twice"),
                       UserError);
  CHECK_THROWS_WITH_AS(train::parse_eval_sets("a b=c.jsonl"), doctest::Contains("not a usable set name"), UserError);
}

TEST_CASE("data mixture: counts per epoch follow the weights; every example cycles; seeded and per-epoch") {
  // 10 task and 30 general examples, weights 3:1: an epoch of 40 takes 30 task (each 3 times) and
  // 10 general (a different third each epoch, all 30 over three epochs).
  train::DataMixture mixture({10, 30}, {3, 1}, 42);
  CHECK(mixture.per_epoch() == std::vector<int64_t>{30, 10});
  std::map<uint32_t, int> general_seen;
  for (int64_t epoch = 0; epoch < 3; epoch++) {
    std::vector<uint32_t> indices = mixture.epoch(epoch);
    REQUIRE(indices.size() == 40);
    std::map<uint32_t, int> task;
    int general = 0;
    for (uint32_t index : indices) {
      if (index < 10)
        task[index]++;
      else
        general++, general_seen[index]++;
    }
    CHECK(general == 10);
    CHECK(task.size() == 10);
    for (const auto& [index, count] : task) CHECK(count == 3);
  }
  CHECK(general_seen.size() == 30);
  for (const auto& [index, count] : general_seen) CHECK(count == 1);
  // Deterministic from (seed, epoch); another seed or epoch draws another order.
  CHECK(train::DataMixture({10, 30}, {3, 1}, 42).epoch(1) == mixture.epoch(1));
  CHECK(train::DataMixture({10, 30}, {3, 1}, 43).epoch(1) != mixture.epoch(1));
  CHECK(mixture.epoch(0) != mixture.epoch(3));
  // Largest remainders keep the epoch size: 7 + 3 examples at 1:1 -> 5 + 5; 1:1:1 over 10 -> 4, 3, 3.
  CHECK(train::DataMixture({7, 3}, {1, 1}, 1).per_epoch() == std::vector<int64_t>{5, 5});
  CHECK(train::DataMixture({4, 3, 3}, {1, 1, 1}, 1).per_epoch() == std::vector<int64_t>{4, 3, 3});
}

TEST_CASE("data mixture: the batcher draws each epoch's mixture and resumes it from a position") {
  train::DataMixture mixture({6, 18}, {1, 1}, 7);  // 12 of each per epoch
  train::BatcherSettings settings;
  settings.batch = 4;
  settings.seq_len = 4;
  settings.seed = 7;
  settings.epoch_examples = [&](int64_t epoch) { return mixture.epoch(epoch); };
  train::Batcher batcher(numbered_examples(24), settings);
  CHECK(batcher.rows_per_epoch() == 24);
  std::vector<train::MicroBatch> reference;
  train::BatcherPosition middle;
  for (int i = 0; i < 20; i++) {  // 80 rows: past three epoch boundaries
    if (i == 9) middle = batcher.position();
    reference.push_back(batcher.next());
  }
  int first_source = 0;
  for (int i = 0; i < 6; i++)  // the first epoch: 12 rows of each source
    for (uint32_t b = 0; b < 4; b++) first_source += reference[size_t(i)].ids[b * 4 + 1] < 16;
  CHECK(first_source == 12);
  train::Batcher resumed(numbered_examples(24), settings);
  resumed.restore(middle);
  for (int i = 9; i < 20; i++) CHECK(resumed.next().ids == reference[size_t(i)].ids);
}

}  // TEST_SUITE

TEST_SUITE("train_e2e") {

TEST_CASE("data mixture: a run mixes two files, logs two eval sets, and resumes bit for bit") {
  const fs::path root = test::binary_dir() / "test-output" / "e2e";
  train::TrainConfig config = test::tiny_lora_config(root, "e2e-mixture");
  const fs::path task = test::tiny_dataset(root / "mixture-task.jsonl", 8, 5);
  const fs::path general = test::tiny_dataset(root / "mixture-general.jsonl", 24, 9);
  config.data = task.string() + ":3," + general.string() + ":1";
  config.eval_data = "task=" + task.string() + ",general=" + general.string();
  config.max_steps = 12;
  config.eval_steps = 4;
  train::TrainSummary summary = train::train(config);
  std::map<std::string, int> evals;
  std::vector<double> losses;
  for (const json& line : metrics_lines(config.output_dir)) {
    for (const char* key : {"eval_task_loss", "eval_general_loss", "eval_loss"})
      if (line.contains(key)) evals[key]++;
    if (line.contains("loss")) losses.push_back(line["loss"]);
  }
  CHECK(evals["eval_task_loss"] == 3);  // steps 4, 8 and the end
  CHECK(evals["eval_general_loss"] == 3);
  CHECK(evals["eval_loss"] == 0);
  CHECK(summary.eval_loss > 0);
  // The follower (dashboard) reads the named sets back.
  train::RunMonitor monitor;
  train::MetricsFollower follower(config.output_dir, monitor);
  follower.poll();
  std::set<std::string> metrics;
  for (const auto& e : monitor.snapshot().evals) metrics.insert(e.metric);
  CHECK(metrics == std::set<std::string>{"eval_general_loss", "eval_task_loss"});

  train::TrainConfig interrupted = config;
  interrupted.output_dir = test::temp_dir("e2e-mixture-crashed").string();
  interrupted.save_steps = 5;
  train::set_step_hook([](int64_t step) {
    if (step == 7) throw std::runtime_error("simulated crash");
  });
  CHECK_THROWS(train::train(interrupted));
  train::set_step_hook(nullptr);
  interrupted.resume_from_checkpoint = "latest";
  train::train(interrupted);
  std::vector<double> resumed;
  for (const json& line : metrics_lines(interrupted.output_dir))
    if (line.contains("loss")) resumed.push_back(line["loss"]);
  CHECK(resumed == losses);  // bit-identical: the mixture of each epoch depends only on (seed, epoch)
}

}  // TEST_SUITE
