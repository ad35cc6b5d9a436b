#include "engine/kernels/launch.hpp"

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

}  // namespace vkt::kernels
