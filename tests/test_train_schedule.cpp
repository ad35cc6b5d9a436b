// Learning-rate schedules against a table written from HF's formulas
// (tests/reference/schedules_reference.py -> tests/data/schedules.json).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/schedule.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::train;

TEST_SUITE("train") {

TEST_CASE("schedules: every HF schedule at every step") {
  auto table = nlohmann::json::parse(read_text_file(test::source_dir() / "tests/data/schedules.json"));
  REQUIRE(table["cases"].size() == 24);
  for (const auto& entry : table["cases"]) {
    ScheduleSettings settings;
    settings.type = schedule_from_name(entry["type"]);
    settings.peak_lr = entry["peak_lr"];
    settings.warmup_steps = entry["warmup"];
    settings.max_steps = entry["max_steps"];
    const auto& kwargs = entry["kwargs"];
    if (kwargs.contains("num_cycles")) settings.num_cycles = kwargs["num_cycles"];
    if (kwargs.contains("power")) settings.power = kwargs["power"];
    if (kwargs.contains("num_decay_steps")) settings.num_decay_steps = kwargs["num_decay_steps"];
    if (kwargs.contains("min_lr_ratio")) settings.min_lr_ratio = kwargs["min_lr_ratio"];
    Schedule schedule(settings);
    const auto& expected = entry["multipliers"];
    for (size_t step = 0; step < expected.size(); step++) {
      INFO(entry["type"].get<std::string>() << " warmup " << settings.warmup_steps << " step " << step);
      CHECK(schedule.multiplier(static_cast<long long>(step)) ==
            doctest::Approx(expected[step].get<double>()).epsilon(1e-12));
    }
  }
}

TEST_CASE("schedules: first optimizer step uses HF's step-0 multiplier") {
  ScheduleSettings settings;
  settings.type = ScheduleType::cosine;
  settings.peak_lr = 2e-4;
  settings.warmup_steps = 4;
  settings.max_steps = 20;
  Schedule schedule(settings);
  CHECK(schedule.learning_rate(1) == 0.0);
  CHECK(schedule.learning_rate(3) == doctest::Approx(1e-4));
  CHECK(schedule.learning_rate(5) == doctest::Approx(2e-4));
}

TEST_CASE("schedules: warmup ratios and bad names") {
  CHECK(resolve_warmup_steps(0.1, 95) == 10);  // ceil(9.5)
  CHECK(resolve_warmup_steps(0.03, 1000) == 30);
  CHECK(resolve_warmup_steps(12, 1000) == 12);
  CHECK_THROWS_AS(schedule_from_name("cosine_annealing"), UserError);
  try {
    schedule_from_name("cosine_annealing");
  } catch (const UserError& error) {
    CHECK(std::string(error.hint()).find("warmup_stable_decay") != std::string::npos);
  }
}

}  // TEST_SUITE
