#pragma once
// What the dashboard shows about a run's method beyond the ledger's categories: the trainable
// parameters by kind (LoRA A and B, DoRA magnitudes, IA3 vectors, soft prompt, modules_to_save,
// trainable tokens, BitFit biases, full weights) and the memory of each adapter kind and of a
// distillation teacher, planned beside allocated (RunInfo::trainable_parameters / memory_parts).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/model/buffers.hpp"
#include "engine/plan/plan.hpp"
#include "engine/train/monitor.hpp"

namespace vkt::train {

// The kind of the trainable tensor `name` (a plan buffer name without its "grad."/"adam_m."/...
// prefix): "LoRA A", "LoRA B", "DoRA magnitudes", "IA3 vectors", "soft prompt", "trainable tokens",
// "modules_to_save", "BitFit biases", "full weights" (full finetuning), else "other".
std::string trainable_kind(const std::string& name, bool full);

// Trainable parameters per kind, in order of first appearance in the plan (each "grad." buffer
// holds one fp32 gradient per parameter).
std::vector<std::pair<std::string, uint64_t>> trainable_parameters_by_kind(const plan::MemoryPlan& plan);

// Bytes per adapter kind (parameters, their gradients and fp32 masters; optimizer states are the
// optimizer row's), planned and allocated in `buffers` (nullptr: measured stays 0). Empty for full
// finetuning, whose weights are the base_weights row.
std::vector<MemoryPart> adapter_memory_parts(const plan::MemoryPlan& plan, const model::BufferSet* buffers);

// The distillation teacher's planned device bytes beside the bytes its buffers took.
MemoryPart teacher_memory_part(const plan::MemoryPlan& teacher_plan, const model::BufferSet& teacher_buffers);

}  // namespace vkt::train
