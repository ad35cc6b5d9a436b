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
// M of the rules of thumb: the bytes per value of the run's weights (the trained type for --method
// full: 4, or 2 with --bf16/--fp16; the base's average for LoRA/QLoRA).
double rules_bytes_per_value(const MemoryPlan& plan);
// Bytes of the fp32 master copy of 16-bit weights (full finetuning with --bf16/--fp16), in the
// master_weights category (which StepRunner::reset does not clear); 0 otherwise.
uint64_t master_weight_bytes(const MemoryPlan& plan);

// Per category: planned bytes beside measured peak bytes and their ratio.
std::string format_plan_vs_measured(const MemoryPlan& plan, const vk::LedgerSnapshot& measured);

}  // namespace vkt::plan
