#pragma once
// `vktune plan`'s table and JSON, and the plan-vs-measured comparison the trainer prints.
#include <cstdint>
#include <optional>
#include <string>

#include "engine/plan/plan.hpp"

namespace vkt::plan {

struct PlanReport {
  MemoryPlan training;            // the run as planned
  MemoryPlan with_checkpointing;  // the same run with gradient checkpointing flipped on (for comparison)
  MemoryPlan without_checkpointing;
  MemoryPlan inference;  // serving the same model: weights + KV cache for kv_tokens
  uint64_t kv_tokens = 0;
  std::optional<uint64_t> device_bytes;  // budget to judge against
  std::string device_name;
};

PlanReport make_report(const spec::ModelShape& shape, const spec::RunSettings& settings,
                       std::optional<uint64_t> device_bytes, const std::string& device_name = {});
std::string format_report(const PlanReport& report);
std::string report_json(const PlanReport& report);

// Per category: planned bytes beside measured peak bytes and their ratio.
std::string format_plan_vs_measured(const MemoryPlan& plan, const vk::LedgerSnapshot& measured);

}  // namespace vkt::plan
