// Preference finetuning (engine/train/preference.cpp): DPO (sigmoid, ipo, hinge) and ORPO against
// TRL 1.16 on the tiny Llama 3 fixture (tests/reference/trl_golden.py wrote
// tests/data/preference/trl.golden.bin), with --gradient-accumulation-steps 2 too (accum.*), the loss
// derivatives against finite differences, and TRL's
// preference JSONL format with its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/model/adapter.hpp"
#include "engine/train/preference.hpp"
#include "engine/train/step_runner.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::train;

namespace {
// A JSONL file in this suite's temporary folder.
std::string jsonl_file(const std::string& name, const std::string& lines) {
  const auto path = test::temp_dir("preference") / name;
  write_file_atomically(path, lines);
  return path.string();
}

struct Variant {
  const char* name;
  Objective objective;
  PreferenceLoss loss;
};
constexpr Variant variants[] = {{"dpo_sigmoid", Objective::dpo, PreferenceLoss::sigmoid},
                                {"dpo_ipo", Objective::dpo, PreferenceLoss::ipo},
                                {"dpo_hinge", Objective::dpo, PreferenceLoss::hinge},
                                {"orpo", Objective::orpo, PreferenceLoss::sigmoid}};

// One variant of trl.golden.bin on `batch`: loss, every metric TRL logged, every LoRA gradient.
void check_variant(const test::GoldenFile& golden, const Variant& variant, const test::GoldenBatch& batch) {
  const auto folder = test::source_dir() / "tests/data/hf/llama3";
  test::AdapterSession opened = test::open_adapter_session(folder, folder / "adapter", batch);
  auto& ctx = test::context();
  auto& session = *opened.session;
  auto& buffers = *session.buffers;
  StepRunner runner(ctx, session, OptimizerSettings{});
  const std::string name = variant.name;
  PreferenceSettings settings;
  settings.objective = variant.objective;
  settings.loss = variant.loss;
  settings.beta = golden["beta"].scalar();
  PreferenceRunner preference(ctx, session, runner, settings);
  PreferenceBatch prepared = preference.prepare(batch);
  // Loss and metrics: fp32 log-probs summed over <= 8 tokens against TRL's fp32 forward.
  const double expected_loss = golden[name + ".loss"].scalar();
  INFO(name << " loss " << prepared.loss << " vs TRL " << expected_loss);
  CHECK(std::fabs(prepared.loss - expected_loss) <= 1e-5 * std::fabs(expected_loss) + 1e-6);
  size_t metrics = 0, golden_metrics = 0;
  for (const auto& entry : prepared.metrics) {  // named variables: clang 14 refuses bindings in INFO
    const std::string key = name + "." + entry.first;
    const double value = entry.second;
    if (!golden.has(key)) continue;  // nll_loss: ORPO's, not recorded
    const double expected = golden[key].scalar();
    INFO(key << " " << value << " vs TRL " << expected);
    CHECK(std::fabs(value - expected) <= 1e-4 * std::fabs(expected) + 1e-6);
    metrics++;
  }
  for (const auto& [tensor, value] : golden.tensors())
    golden_metrics += tensor.rfind(name + ".", 0) == 0 && tensor.find(".grad.") == std::string::npos &&
                      tensor.find(".batch.") == std::string::npos && tensor != name + ".loss";
  CHECK(metrics == golden_metrics);
  // The gradients: the weighted micro-batch through the ordinary forward + backward.
  runner.reset();
  runner.upload(prepared.weighted);
  kernels::StepState state;
  state.spare[0] = static_cast<float>(1.0 / prepared.weighted.weight_sum);
  kernels::write_step_state(ctx, buffers.buffer("step_state"), state);
  ctx.run([&](vk::Recorder& r) {
    session.transformer->record_forward(r, true, true);
    session.transformer->record_backward(r);
  });
  size_t compared = 0, expected = 0;
  double worst = 0;
  for (const auto& spec : session.plan.buffers) {
    if (spec.category != vk::Category::gradients) continue;
    const std::string key = name + ".grad.base_model.model." + spec.name.substr(5) + ".weight";
    REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
    worst = std::max(worst, test::relative_error(test::download(buffers.buffer(spec.name)), golden[key].floats()));
    compared++;
  }
  for (const auto& [tensor, value] : golden.tensors()) expected += tensor.rfind(name + ".grad.", 0) == 0;
  INFO(name << ": " << compared << " LoRA gradients, worst relative error " << worst
            << " (bound 1e-3, today's golden bound)");
  CHECK(compared == expected);
  CHECK(worst <= 1e-3);
}

// Rows [first, first + count) of `batch`: one micro-batch of an accumulated step.
test::GoldenBatch batch_rows(const test::GoldenBatch& batch, uint32_t first, uint32_t count) {
  test::GoldenBatch rows;
  rows.batch = count;
  rows.seq_len = batch.seq_len;
  const size_t begin = size_t(first) * batch.seq_len, end = begin + size_t(count) * batch.seq_len;
  rows.ids.assign(batch.ids.begin() + begin, batch.ids.begin() + end);
  rows.targets.assign(batch.targets.begin() + begin, batch.targets.begin() + end);
  rows.weights.assign(batch.weights.begin() + begin, batch.weights.begin() + end);
  rows.positions.assign(batch.positions.begin() + begin, batch.positions.begin() + end);
  rows.segments.assign(batch.segments.begin() + begin, batch.segments.begin() + end);
  rows.lengths.assign(batch.lengths.begin() + first, batch.lengths.begin() + first + count);
  for (float weight : rows.weights) rows.weight_sum += weight;
  return rows;
}

// accum.<name> of trl.golden.bin: `batch` as 2 micro-batches of 2 rows through PreferenceRunner::step
// (--gradient-accumulation-steps 2), one SGD step at lr 1 without clipping, so the step's gradient is
// (weights before - after). HF Trainer divides each micro-batch's loss by the accumulation steps.
void check_accumulated(const test::GoldenFile& golden, const Variant& variant, const test::GoldenBatch& batch) {
  const auto folder = test::source_dir() / "tests/data/hf/llama3";
  const std::vector<test::GoldenBatch> micro = {batch_rows(batch, 0, 2), batch_rows(batch, 2, 2)};
  test::AdapterSession opened = test::open_adapter_session(folder, folder / "adapter", micro[0]);
  auto& ctx = test::context();
  auto& session = *opened.session;
  auto& buffers = *session.buffers;
  OptimizerSettings sgd;
  sgd.optimizer = spec::Optimizer::sgd;
  sgd.max_grad_norm = 0;
  StepRunner runner(ctx, session, sgd);
  runner.reset();
  const std::string name = std::string("accum.") + variant.name;
  PreferenceSettings settings;
  settings.objective = variant.objective;
  settings.loss = variant.loss;
  settings.beta = golden["beta"].scalar();
  PreferenceRunner preference(ctx, session, runner, settings);
  std::vector<std::string> trained;
  std::vector<std::vector<float>> before;
  for (const auto& spec : session.plan.buffers)
    if (spec.category == vk::Category::gradients) {
      trained.push_back(spec.name.substr(5));
      before.push_back(test::download(buffers.buffer(trained.back())));
    }
  REQUIRE(preference.step(1, 1.0, {micro[0], micro[1]}, false) == 0);
  const double loss = runner.take_loss_sum(), expected_loss = golden[name + ".loss"].scalar();
  INFO(name << " step loss " << loss << " vs TRL " << expected_loss);
  CHECK(std::fabs(loss - expected_loss) <= 1e-5 * std::fabs(expected_loss) + 1e-6);
  double worst = 0;
  for (size_t i = 0; i < trained.size(); i++) {
    std::vector<float> gradient = test::download(buffers.buffer(trained[i]));
    for (size_t j = 0; j < gradient.size(); j++) gradient[j] = before[i][j] - gradient[j];
    const std::string key = name + ".grad.base_model.model." + trained[i] + ".weight";
    REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
    worst = std::max(worst, test::relative_error(gradient, golden[key].floats()));
  }
  size_t expected = 0;
  for (const auto& [tensor, value] : golden.tensors()) expected += tensor.rfind(name + ".grad.", 0) == 0;
  INFO(name << ": " << trained.size() << " LoRA gradients, worst relative error " << worst << " (bound 1e-3)");
  CHECK(trained.size() == expected);
  CHECK(worst <= 1e-3);
}
}  // namespace

TEST_SUITE("train_preference") {

TEST_CASE("preference: DPO (sigmoid, ipo, hinge), ORPO and KTO match TRL 1.16: loss, metrics, LoRA gradients") {
  test::GoldenFile golden(test::source_dir() / "tests/data/preference/trl.golden.bin");
  test::GoldenBatch pairs = test::golden_batch(golden);
  REQUIRE(pairs.batch == 4);
  for (const Variant& variant : variants) check_variant(golden, variant, pairs);
  check_variant(golden, {"kto", Objective::kto, PreferenceLoss::sigmoid}, test::golden_batch(golden, "kto.batch."));
}

TEST_CASE("preference: accumulated micro-batches match TRL + HF Trainer (DPO, ORPO, KTO; 2 x 1 pair / 2 x 2 rows)") {
  // Each micro-batch normalises by itself (ORPO's NLL over its chosen tokens, KTO's KL estimate), and
  // the step is the mean over micro-batches, as HF Trainer scales each loss by 1/accumulation steps.
  test::GoldenFile golden(test::source_dir() / "tests/data/preference/trl.golden.bin");
  const test::GoldenBatch pairs = test::golden_batch(golden, "accum.batch.");
  REQUIRE(pairs.batch == 4);
  check_accumulated(golden, variants[0], pairs);
  check_accumulated(golden, variants[3], pairs);
  check_accumulated(golden, {"kto", Objective::kto, PreferenceLoss::sigmoid}, test::golden_batch(golden, "kto.batch."));
}

TEST_CASE("preference: each loss's derivatives match finite differences") {
  for (const Variant& variant : variants) {
    const std::string name = variant.name;
    CAPTURE(name);
    PreferenceSettings settings;
    settings.objective = variant.objective;
    settings.loss = variant.loss;
    settings.beta = 0.3;
    PairLogps p;
    p.chosen = -9.0;
    p.rejected = -7.5;
    p.ref_chosen = -9.4;
    p.ref_rejected = -7.0;
    p.chosen_tokens = 5;
    p.rejected_tokens = 3;
    PairLoss at = pair_loss(settings, p);
    const double h = 1e-5;
    PairLogps up = p, down = p;
    up.chosen += h;
    down.chosen -= h;
    CHECK(at.d_chosen ==
          doctest::Approx((pair_loss(settings, up).loss - pair_loss(settings, down).loss) / (2 * h)).epsilon(1e-6));
    up = p;
    down = p;
    up.rejected += h;
    down.rejected -= h;
    CHECK(at.d_rejected ==
          doctest::Approx((pair_loss(settings, up).loss - pair_loss(settings, down).loss) / (2 * h)).epsilon(1e-6));
    CHECK(at.d_chosen != 0.0);
  }
}

TEST_CASE("preference: TRL's formats (strings, conversations) and errors naming file:line") {
  text::ChatFormat chat;  // ChatML
  std::string path = jsonl_file("pairs.jsonl",
                                "{\"prompt\": \"2+2=\", \"chosen\": \"4\", \"rejected\": \"5\"}\n"
                                "{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
                                "\"content\": \"hello\"}, {\"role\": \"user\", \"content\": \"bye\"}], "
                                "\"chosen\": [{\"role\": \"assistant\", \"content\": \"ciao\"}], "
                                "\"rejected\": [{\"role\": \"assistant\", \"content\": \"no\"}]}\n");
  auto examples = read_preference_jsonl(path, chat);
  REQUIRE(examples.size() == 4);
  CHECK(examples[0].segments[1].text == "4");
  CHECK(examples[1].segments[1].text == "5");
  CHECK(examples[1].line == 1);
  // The conversation: only the answer's assistant turn is trained, not the prompt's.
  std::string trained;
  for (const auto& segment : examples[2].segments)
    if (segment.completion) trained += segment.text;
  CHECK(trained.find("ciao") == 0);
  CHECK(trained.find("hello") == std::string::npos);

  auto error = [&](const std::string& line) {
    std::string file = jsonl_file("bad.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n" + line);
    std::string message = test::user_error_of([&] { read_preference_jsonl(file, chat); });
    CHECK(message.find(file + ":2: ") == 0);
    return message;
  };
  CHECK(error("{\"prompt\": \"a\", \"chosen\": \"b\"}").find("missing \"rejected\"") != std::string::npos);
  CHECK(error("{\"prompt\": \"a\", \"chosen\": \"\", \"rejected\": \"c\"}").find("\"chosen\" is empty") !=
        std::string::npos);
  CHECK(error("{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}").find("KTO") != std::string::npos);
  CHECK(error("{\"prompt\": \"a\", \"chosen\": 3, \"rejected\": \"c\"}").find("must be a string") != std::string::npos);
  CHECK(error("{\"chosen\": [{\"role\": \"user\", \"content\": \"x\"}], \"rejected\": []}").find("chosen") !=
        std::string::npos);
}

TEST_CASE("preference: KTO's unpaired format: labels, and errors naming file:line") {
  text::ChatFormat chat;
  std::string path = jsonl_file("kto.jsonl",
                                "{\"prompt\": \"2+2=\", \"completion\": \"4\", \"label\": true}\n"
                                "{\"prompt\": \"2+2=\", \"completion\": \"5\", \"label\": false}\n");
  auto examples = read_preference_jsonl(path, chat, Objective::kto);
  REQUIRE(examples.size() == 2);
  CHECK(examples[0].desirable);
  CHECK(!examples[1].desirable);
  CHECK(examples[1].segments[1].text == "5");
  auto error = [&](const std::string& line) {
    std::string file =
        jsonl_file("bad_kto.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}\n" + line);
    std::string message = test::user_error_of([&] { read_preference_jsonl(file, chat, Objective::kto); });
    CHECK(message.find(file + ":2: ") == 0);
    return message;
  };
  CHECK(error("{\"prompt\": \"a\", \"completion\": \"b\", \"label\": 1}").find("\"label\" must be true or false") !=
        std::string::npos);
  CHECK(error("{\"prompt\": \"a\", \"completion\": \"\", \"label\": true}").find("\"completion\" is empty") !=
        std::string::npos);
  CHECK(error("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}").find("missing \"completion\"") !=
        std::string::npos);
}

TEST_CASE("preference: pairs stay together in micro-batches, in a shuffled order") {
  std::vector<uint32_t> order = pair_epoch_order(10, 42, 0, true);
  REQUIRE(order.size() == 10);
  for (size_t i = 0; i < order.size(); i += 2) {
    CHECK(order[i] % 2 == 0);
    CHECK(order[i + 1] == order[i] + 1);
  }
  CHECK(order != pair_epoch_order(10, 42, 1, true));
  CHECK(pair_epoch_order(10, 42, 0, false)[2] == 2);
}

}  // TEST_SUITE
