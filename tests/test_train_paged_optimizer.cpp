// --paged-optimizer: optimizer states stay on the device while the memory budget allows and only
// the excess is paged to host memory; the ledger shows where they are and placement changes no
// number (the kernels read host-visible states over the bus exactly as device ones).
#include <doctest/doctest.h>

#include "engine/train/trainer.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
namespace fs = std::filesystem;

TEST_SUITE("train") {

TEST_CASE("paged optimizer: states on the device within the budget, the excess in host memory, same losses") {
  const fs::path root = test::binary_dir() / "test-output" / "train";
  train::TrainConfig reference_config = test::tiny_lora_config(root, "paged-reference");
  reference_config.max_steps = 3;
  reference_config.logging_steps = 1;
  train::TrainSummary reference = train::train(reference_config);
  const auto state = size_t(vk::Category::optimizer_state);
  const auto device = size_t(vk::MemoryKind::device), host = size_t(vk::MemoryKind::offload);
  const uint64_t states = reference.plan.bytes(vk::Category::optimizer_state);
  REQUIRE(states > 0);
  CHECK(reference.measured.current[state][host] == 0);

  // A budget half the states short of the plan: about half the states move to host memory.
  train::TrainConfig paged_config = reference_config;
  paged_config.output_dir = test::temp_dir("paged-half").string();
  paged_config.paged_optimizer = true;
  const uint64_t budget = reference.plan.device_bytes() - states / 2;
  paged_config.device_memory = std::to_string(budget);
  train::TrainSummary paged = train::train(paged_config);
  const uint64_t planned_host = paged.plan.bytes(vk::Category::optimizer_state, vk::MemoryKind::offload);
  CHECK(planned_host >= states / 2);
  CHECK(planned_host < states);
  CHECK(paged.plan.device_bytes() <= budget);
  // The ledger agrees with the plan on both sides.
  CHECK(paged.measured.current[state][host] == planned_host);
  CHECK(paged.measured.current[state][device] == states - planned_host);
  std::vector<double> expected = test::logged_losses(reference_config.output_dir);
  std::vector<double> losses = test::logged_losses(paged_config.output_dir);
  REQUIRE(expected.size() == 3);
  CHECK(losses == expected);  // bit for bit

  // A budget with room for everything: nothing is paged.
  train::TrainConfig roomy_config = paged_config;
  roomy_config.output_dir = test::temp_dir("paged-roomy").string();
  roomy_config.device_memory = std::to_string(reference.plan.device_bytes() + (1 << 20));
  train::TrainSummary roomy = train::train(roomy_config);
  CHECK(roomy.plan.bytes(vk::Category::optimizer_state, vk::MemoryKind::offload) == 0);
  CHECK(roomy.measured.current[state][host] == 0);
  CHECK(roomy.measured.current[state][device] == states);
}

}  // TEST_SUITE
