#pragma once
// What every kernel wrapper needs: push-constant packing and grid sizes.
#include <cstdint>

#include "engine/vk/context.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::kernels {

using vk::BufferRange;
using vk::Recorder;

struct Grid {
  uint32_t x = 1, y = 1, z = 1;
};

// Workgroups for `count` items at `per_group` items each, as (x, y) with x <= 65535
// (the portable limit); shaders recover the index with global_index_1d().
Grid grid_1d(uint64_t count, uint32_t per_group);

inline uint32_t ceil_div(uint64_t a, uint64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }

}  // namespace vkt::kernels
