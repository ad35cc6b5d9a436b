#include "engine/kernels/dispatch.hpp"

#include "engine/base/error.hpp"

namespace vkt::kernels {

Grid grid_1d(uint64_t count, uint32_t per_group) {
  uint64_t groups = (count + per_group - 1) / per_group;
  if (groups == 0) return {0, 1, 1};
  constexpr uint64_t max_x = 65535;
  if (groups <= max_x) return {static_cast<uint32_t>(groups), 1, 1};
  uint64_t y = (groups + max_x - 1) / max_x;
  VKT_ASSERT(y <= max_x, "launch too large");
  return {static_cast<uint32_t>(max_x), static_cast<uint32_t>(y), 1};
}

void record_dispatch(Recorder& recorder, const Dispatch& dispatch) {
  const vk::Pipeline& pipeline = recorder.context().pipelines().get(dispatch.shader, dispatch.specialization);
  const char* label = dispatch.label ? dispatch.label : dispatch.shader.c_str();
  recorder.dispatch(pipeline, dispatch.push.data, dispatch.push.bytes, dispatch.grid.x, dispatch.grid.y,
                    dispatch.grid.z, dispatch.reads, dispatch.writes, label);
}

}  // namespace vkt::kernels
