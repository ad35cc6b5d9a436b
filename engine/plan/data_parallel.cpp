#include "engine/plan/data_parallel.hpp"

namespace vkt::plan {

void add_data_parallel_staging(MemoryPlan& plan, uint32_t ranks) {
  if (ranks <= 1 || !plan.settings.training) return;
  uint64_t bytes = 12;  // loss.step (the loss, distillation's KL and CE parts) joins the last bucket
  for (const BufferSpec& spec : plan.buffers)
    if (spec.name.rfind("grad.", 0) == 0) bytes += spec.bytes;
  plan.buffers.push_back({"ddp.buckets", vk::Category::staging, vk::MemoryKind::staging, bytes, true});
}

void add_data_parallel_staging(PlanReport& report, uint32_t ranks) {
  for (MemoryPlan* plan : {&report.training, &report.with_checkpointing, &report.without_checkpointing})
    add_data_parallel_staging(*plan, ranks);
}

}  // namespace vkt::plan
