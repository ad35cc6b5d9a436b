// The planner's optimizer states for --shard-optimizer (ZeRO-1: one rank's slice) and
// --optim adafactor (row + column accumulators per matrix); `vktune plan --world-size N`'s
// gradient-bucket staging (ddp.buckets).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/plan/data_parallel.hpp"
#include "engine/plan/plan.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
using plan::MemoryPlan;
using spec::ModelShape;
using spec::RunSettings;

namespace {
ModelShape llama3_8b() { return {4096, 14336, 32, 32, 8, 128, 128256, false, false}; }

uint64_t trainable_elements(const MemoryPlan& plan) {
  uint64_t elements = 0;
  for (const auto& buffer : plan.buffers)
    if (buffer.name.rfind("grad.", 0) == 0) elements += buffer.bytes / 4;
  return elements;
}
}  // namespace

TEST_SUITE("plan") {

TEST_CASE("plan --shard-optimizer --world-size N: each rank plans the AdamW states of ceil(1/N) of the elements") {
  RunSettings settings;
  settings.method = spec::Method::full;
  const MemoryPlan whole = plan::make_plan(llama3_8b(), settings);
  const uint64_t elements = trainable_elements(whole);
  CHECK(whole.bytes(vk::Category::optimizer_state) == elements * 8);  // m and v, fp32
  for (uint32_t ranks : {2u, 8u}) {
    CAPTURE(ranks);
    settings.optimizer_shards = ranks;
    const MemoryPlan sharded = plan::make_plan(llama3_8b(), settings);
    const uint64_t slice = (elements + ranks - 1) / ranks;
    CHECK(sharded.find("adam_m.shard").bytes == slice * 4);
    CHECK(sharded.find("adam_v.shard").bytes == slice * 4);
    CHECK(sharded.bytes(vk::Category::optimizer_state) == slice * 8);
    // Weights and gradients stay whole on every rank (ZeRO-1 shards the states only).
    CHECK(sharded.bytes(vk::Category::gradients) == whole.bytes(vk::Category::gradients));
    CHECK(sharded.device_bytes() + (elements * 8 - slice * 8) >= whole.device_bytes());
  }
}

TEST_CASE("plan --optim adafactor: rows + columns for each matrix, the whole vector for 1-D tensors") {
  RunSettings settings;
  settings.optimizer = spec::Optimizer::adafactor;
  settings.lora_r = 16;
  MemoryPlan lora = plan::make_plan(llama3_8b(), settings);  // q_proj, v_proj
  const std::string a = "model.layers.0.self_attn.q_proj.lora_A", b = "model.layers.0.self_attn.v_proj.lora_B";
  CHECK(lora.find("adafactor_row." + a).bytes == 16 * 4);  // lora_A: [r, in]
  CHECK(lora.find("adafactor_col." + a).bytes == 4096 * 4);
  CHECK(lora.find("adafactor_row." + b).bytes == 1024 * 4);  // lora_B: [out (8 kv heads x 128), r]
  CHECK(lora.find("adafactor_col." + b).bytes == 16 * 4);
  settings.method = spec::Method::full;
  MemoryPlan full = plan::make_plan(llama3_8b(), settings);
  CHECK(full.find("adafactor_row.model.embed_tokens.weight").bytes == 128256ull * 4);
  CHECK(full.find("adafactor_col.model.embed_tokens.weight").bytes == 4096ull * 4);
  CHECK(full.find("adafactor_v.model.norm.weight").bytes == 4096ull * 4);
  // ~8B parameters: AdamW plans 64 GB of states, Adafactor about 12 MB (rows + columns, norms whole).
  CHECK(full.bytes(vk::Category::optimizer_state) < 16ull << 20);
}

// One rank of N holds every gradient again in host-visible staging (GradientBuckets sums them
// there): the plan of `vktune plan --world-size N` (N > 1) has it, as the trainer's plan does.
TEST_CASE("plan --world-size N: ddp.buckets stages every gradient plus loss.step, on every rank of N > 1") {
  RunSettings settings;
  settings.lora_r = 16;
  plan::PlanReport one = plan::make_report(llama3_8b(), settings, std::nullopt);
  plan::add_data_parallel_staging(one, 1);
  CHECK_FALSE(one.training.contains("ddp.buckets"));
  for (uint32_t ranks : {2u, 8u}) {
    CAPTURE(ranks);
    plan::PlanReport report = plan::make_report(llama3_8b(), settings, std::nullopt);
    plan::add_data_parallel_staging(report, ranks);
    const uint64_t gradient_bytes = trainable_elements(report.training) * 4;
    for (const MemoryPlan* plan : {&report.training, &report.with_checkpointing, &report.without_checkpointing}) {
      REQUIRE(plan->contains("ddp.buckets"));
      CHECK(plan->find("ddp.buckets").bytes == gradient_bytes + 12);
      CHECK(plan->bytes(vk::Category::staging) == one.training.bytes(vk::Category::staging) + gradient_bytes + 12);
    }
  }
  // The command line: the staging category of --world-size 2 against 1 (a tiny model's config.json).
  const std::filesystem::path model = test::tiny_model(test::binary_dir() / "test-output" / "plan-world-size");
  auto staging = [&model](int world_size) {
    const std::pair<int, std::string> result =
        test::run_command((test::binary_dir() / "vktune").string() + " plan --model " + model.string() +
                          " --json --world-size " + std::to_string(world_size) + " 2>/dev/null");
    INFO(result.second);
    REQUIRE(result.first == 0);
    std::istringstream out(result.second.substr(result.second.find('{')));
    nlohmann::json json;
    out >> json;  // the plan's object (advice lines may follow)
    return json["bytes"]["staging"]["host_staging"].get<uint64_t>();
  };
  CHECK(staging(2) > staging(1));
}

// adamw_8bit's blockwise states under --shard-optimizer: every part of a tensor of >= 4096
// elements starts on a 256-element block and is >= 4096 long (the kernel's 8-bit path and the
// whole tensor's blocks), the slices tile the elements in order, and the planned bytes per rank
// are the largest slice's: its parts' 8-bit layouts plus fp32 for the small tensors.
TEST_CASE("plan --shard-optimizer --optim adamw_8bit: slices of whole 256-element blocks, 4096+ per part") {
  const std::vector<uint64_t> counts = {1000, 4096, 20000, 4500, 300, 12288, 8191};
  uint64_t total = 0;
  for (uint64_t count : counts) total += count;
  for (uint32_t ranks : {2u, 3u, 5u, 16u}) {
    CAPTURE(ranks);
    const std::vector<uint64_t> bounds = plan::optimizer_shard_bounds(counts, ranks, true);
    REQUIRE(bounds.size() == ranks + 1);
    CHECK(bounds.front() == 0);
    CHECK(bounds.back() == total);
    uint64_t covered = 0, largest = 0, largest_elements = 0;
    for (uint32_t r = 0; r < ranks; r++) {
      CHECK(bounds[r] <= bounds[r + 1]);
      uint64_t bytes = 0;
      for (const plan::ShardPiece& piece : plan::optimizer_shard_pieces(counts, bounds, r, true)) {
        CAPTURE(piece.tensor);
        CHECK(piece.packed == (counts[piece.tensor] >= 4096));
        if (piece.packed) {
          CHECK(piece.first % 256 == 0);
          CHECK(piece.count >= 4096);
        }
        CHECK(piece.state_offset == bytes);
        bytes += piece.state_bytes;
        covered += piece.count;
      }
      largest = std::max(largest, bytes);
      largest_elements = std::max(largest_elements, bounds[r + 1] - bounds[r]);
    }
    CHECK(covered == total);
    CHECK(plan::optimizer_shard_state_bytes(counts, ranks, true) == largest);
    // fp32 states: the plain balanced split (ceil(total / N) at most), as before
    const std::vector<uint64_t> fp32_bounds = plan::optimizer_shard_bounds(counts, ranks, false);
    CHECK(plan::optimizer_shard_state_bytes(counts, ranks, false) == (total + ranks - 1) / ranks * 4);
    CHECK(fp32_bounds[1] == total / ranks);
    CHECK(largest_elements >= (total + ranks - 1) / ranks);
  }
  // A whole plan: 2 ranks of full finetuning keep about half the unsharded 8-bit states.
  RunSettings settings;
  settings.method = spec::Method::full;
  settings.optimizer = spec::Optimizer::adamw_8bit;
  const MemoryPlan whole = plan::make_plan(llama3_8b(), settings);
  settings.optimizer_shards = 2;
  const MemoryPlan sharded = plan::make_plan(llama3_8b(), settings);
  const double ratio =
      double(sharded.bytes(vk::Category::optimizer_state)) / double(whole.bytes(vk::Category::optimizer_state));
  CAPTURE(ratio);
  CHECK(std::abs(ratio - 0.5) < 0.01);
}

// 16-bit full finetuning under --shard-optimizer: one "master.shard" of the widest slice's
// elements replaces the per-tensor fp32 masters (OptimizerShard keeps them at slice offsets).
TEST_CASE("plan --shard-optimizer --method full --bf16: each rank plans the fp32 masters of its slice") {
  RunSettings settings;
  settings.method = spec::Method::full;
  settings.dtype = kernels::DType::bf16;
  settings.activation_dtype = kernels::DType::bf16;
  const MemoryPlan whole = plan::make_plan(llama3_8b(), settings);
  const uint64_t elements = trainable_elements(whole);
  REQUIRE(whole.contains("master.model.embed_tokens.weight"));
  for (uint32_t ranks : {2u, 8u}) {
    CAPTURE(ranks);
    settings.optimizer_shards = ranks;
    const MemoryPlan sharded = plan::make_plan(llama3_8b(), settings);
    CHECK_FALSE(sharded.contains("master.model.embed_tokens.weight"));
    CHECK(sharded.find("master.shard").bytes == (elements + ranks - 1) / ranks * 4);
    CHECK(sharded.bytes(vk::Category::master_weights) == sharded.find("master.shard").bytes);
    // the masters cover every trainable element, the norms' too: within 0.1% of 1/N of the unsharded ones
    CHECK(std::abs(double(sharded.bytes(vk::Category::master_weights)) * ranks /
                       double(whole.bytes(vk::Category::master_weights)) -
                   1.0) < 1e-3);
  }
}

}  // TEST_SUITE
