// Preference finetuning (engine/train/preference.cpp): DPO (sigmoid, ipo, hinge) and ORPO against
// TRL 1.16 on the tiny Llama 3 fixture (tests/reference/trl_golden.py wrote
// tests/data/preference/trl.golden.bin), the loss derivatives against finite differences, and TRL's
// preference JSONL format with its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "engine/base/error.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/model/adapter.hpp"
#include "engine/train/preference.hpp"
#include "engine/train/step_runner.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::train;

namespace {
std::string write_jsonl(const std::string& name, const std::string& contents) {
  auto path = test::temp_dir("preference") / name;
  std::ofstream(path) << contents;
  return path.string();
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const UserError& error) {
    return std::string(error.what()) + " | " + error.hint();
  }
  return "";
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
}  // namespace

TEST_SUITE("train_preference") {

TEST_CASE("preference: DPO (sigmoid, ipo, hinge) and ORPO match TRL 1.16: loss, rewards, logps, LoRA gradients") {
  const auto folder = test::source_dir() / "tests/data/hf/llama3";
  test::GoldenFile golden(test::source_dir() / "tests/data/preference/trl.golden.bin");
  test::GoldenBatch batch = test::golden_batch(golden);
  REQUIRE(batch.batch == 4);
  test::AdapterSession opened = test::open_adapter_session(folder, folder / "adapter", batch);
  auto& ctx = test::context();
  auto& session = *opened.session;
  auto& buffers = *session.buffers;
  StepRunner runner(ctx, session, OptimizerSettings{});
  for (const Variant& variant : variants) {
    const std::string name = variant.name;
    CAPTURE(name);
    PreferenceSettings settings;
    settings.objective = variant.objective;
    settings.loss = variant.loss;
    settings.beta = golden["beta"].scalar();
    PreferenceRunner preference(ctx, session, runner, settings);
    PreferenceBatch prepared = preference.prepare(batch);
    // Loss and metrics: fp32 log-probs summed over <= 6 tokens against TRL's fp32 forward.
    const double expected_loss = golden[name + ".loss"].scalar();
    INFO("loss " << prepared.loss << " vs TRL " << expected_loss);
    CHECK(std::fabs(prepared.loss - expected_loss) <= 1e-5 * std::fabs(expected_loss) + 1e-6);
    const double pairs = double(prepared.pairs.size());
    double chosen = 0, rejected = 0, accuracy = 0, logps_chosen = 0, logps_rejected = 0;
    for (size_t p = 0; p < prepared.pairs.size(); p++) {
      chosen += prepared.losses[p].reward_chosen / pairs;
      rejected += prepared.losses[p].reward_rejected / pairs;
      accuracy += (prepared.losses[p].reward_chosen > prepared.losses[p].reward_rejected) / pairs;
      const bool orpo = variant.objective == Objective::orpo;
      logps_chosen +=
          (orpo ? prepared.pairs[p].chosen / prepared.pairs[p].chosen_tokens : prepared.pairs[p].chosen) / pairs;
      logps_rejected +=
          (orpo ? prepared.pairs[p].rejected / prepared.pairs[p].rejected_tokens : prepared.pairs[p].rejected) / pairs;
    }
    const double reward_chosen = golden[name + ".rewards/chosen"].scalar();
    const double reward_rejected = golden[name + ".rewards/rejected"].scalar();
    CHECK(chosen == doctest::Approx(reward_chosen).epsilon(1e-4));
    CHECK(rejected == doctest::Approx(reward_rejected).epsilon(1e-4));
    CHECK(chosen - rejected == doctest::Approx(golden[name + ".rewards/margins"].scalar()).epsilon(1e-4));
    CHECK(accuracy == golden[name + ".rewards/accuracies"].scalar());
    CHECK(logps_chosen == doctest::Approx(golden[name + ".logps/chosen"].scalar()).epsilon(1e-5));
    CHECK(logps_rejected == doctest::Approx(golden[name + ".logps/rejected"].scalar()).epsilon(1e-5));
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
    size_t compared = 0;
    double worst = 0;
    for (const auto& spec : session.plan.buffers) {
      if (spec.category != vk::Category::gradients) continue;
      const std::string key = name + ".grad.base_model.model." + spec.name.substr(5) + ".weight";
      REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
      worst = std::max(worst, test::relative_error(test::download(buffers.buffer(spec.name)), golden[key].floats()));
      compared++;
    }
    size_t expected = 0;
    for (const auto& [tensor, value] : golden.tensors()) expected += tensor.rfind(name + ".grad.", 0) == 0;
    INFO(compared << " LoRA gradients, worst relative error " << worst << " (bound 1e-3, today's golden bound)");
    CHECK(compared == expected);
    CHECK(worst <= 1e-3);
  }
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
  std::string path = write_jsonl("pairs.jsonl",
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
    std::string file = write_jsonl("bad.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n" + line);
    std::string message = error_of([&] { read_preference_jsonl(file, chat); });
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
