#pragma once
// What data parallelism (several ranks under mpirun) adds to a rank's plan.
#include <cstdint>

#include "engine/plan/plan.hpp"
#include "engine/plan/report.hpp"

namespace vkt::plan {

// Adds "ddp.buckets": the host-visible staging in which train::GradientBuckets sums the gradient
// buckets over the ranks, every grad.* buffer plus loss.step (4 bytes), allocated by its owner.
// Nothing for one rank.
void add_data_parallel_staging(MemoryPlan& plan, uint32_t ranks);
// The same for `vktune plan --world-size N`: its three training plans (as run, with and without
// gradient checkpointing), so the table, the verdict and the JSON show one rank of N.
void add_data_parallel_staging(PlanReport& report, uint32_t ranks);

}  // namespace vkt::plan
