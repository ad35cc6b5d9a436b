#include <string>

#include "engine/base/files.hpp"
#include "engine/plan/plan.hpp"

// The planner's rules of thumb and its verdict on a device: what fits, and which changes (cheapest
// first) would make a plan fit. Split from plan.cpp, which sizes the buffers.
namespace vkt::plan {

using spec::Method;
using spec::optimizer_states_per_parameter;
using spec::RunSettings;

RulesOfThumb rules_of_thumb(double parameters, double bytes_per_value, double trainable_parameters,
                            uint32_t optimizer_states) {
  RulesOfThumb rules;
  rules.weights_bytes = parameters * bytes_per_value;
  rules.inference_bytes = rules.weights_bytes * 1.2;
  rules.gradients_and_states = trainable_parameters * (1 + optimizer_states) * bytes_per_value;
  return rules;
}

Verdict judge(const MemoryPlan& plan, uint64_t device_bytes) {
  Verdict verdict;
  verdict.required = plan.device_bytes();
  verdict.available = device_bytes;
  verdict.headroom = static_cast<int64_t>(device_bytes) - static_cast<int64_t>(verdict.required);
  verdict.fits = verdict.headroom >= 0;
  if (verdict.fits) return verdict;
  // Apply the changes cumulatively in order of cost and report what each saves.
  RunSettings current = plan.settings;
  uint64_t current_bytes = verdict.required;
  auto try_change = [&](const std::string& description, RunSettings changed) {
    if (current_bytes <= device_bytes) return;
    MemoryPlan next = make_plan(plan.shape, changed);
    uint64_t next_bytes = next.device_bytes();
    if (next_bytes >= current_bytes) return;
    std::string line = description + ": saves " + format_bytes(double(current_bytes - next_bytes)) + " -> " +
                       format_bytes(double(next_bytes)) + (next_bytes <= device_bytes ? " (fits)" : "");
    verdict.advice.push_back(line);
    current = changed;
    current_bytes = next_bytes;
  };
  if (current.method != Method::full && current.base_format != WeightFormat::nf4) {
    RunSettings changed = current;
    changed.method = Method::qlora;
    changed.base_format = WeightFormat::nf4;
    changed.double_quant = true;
    try_change("--method qlora (NF4 base with double quantization)", changed);
  }
  if (!current.gradient_checkpointing && current.training) {
    RunSettings changed = current;
    changed.gradient_checkpointing = true;
    try_change("--gradient-checkpointing", changed);
  }
  while (current.batch > 1 && current_bytes > device_bytes) {
    RunSettings changed = current;
    changed.batch = current.batch / 2;
    uint64_t before = current.batch;
    try_change("--per-device-train-batch-size " + std::to_string(changed.batch) +
                   " with twice the --gradient-accumulation-steps",
               changed);
    if (current.batch == before) break;
  }
  if (!current.offload_optimizer && optimizer_states_per_parameter(current.optimizer) > 0 && current.training) {
    RunSettings changed = current;
    changed.offload_optimizer = true;
    try_change("--offload-optimizer (optimizer states in host memory)", changed);
  }
  while (current.seq_len > 128 && current_bytes > device_bytes) {
    RunSettings changed = current;
    changed.seq_len = current.seq_len / 2;
    uint64_t before = current.seq_len;
    try_change("--max-length " + std::to_string(changed.seq_len), changed);
    if (current.seq_len == before) break;
  }
  while (current.method != Method::full && current.lora_r > 4 && current_bytes > device_bytes) {
    RunSettings changed = current;
    changed.lora_r = current.lora_r / 2;
    uint32_t before = current.lora_r;
    try_change("--lora-r " + std::to_string(changed.lora_r), changed);
    if (current.lora_r == before) break;
  }
  if (current_bytes > device_bytes)
    verdict.advice.push_back("even with all of the above it needs " + format_bytes(double(current_bytes)) +
                             ": use a device with more memory or a smaller model");
  return verdict;
}

}  // namespace vkt::plan
