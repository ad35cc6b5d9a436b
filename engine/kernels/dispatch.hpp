#pragma once
// One shader dispatch, described by named fields and recorded by record_dispatch(): what every
// kernel wrapper of this directory records, plus the grid-size helpers they share.
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

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

// A view of a wrapper's push-constant struct, which mirrors the shader's block (std430 offsets).
// It refers to the struct: keep the struct alive until record_dispatch() returns.
struct PushConstants {
  const void* data = nullptr;
  uint32_t bytes = 0;

  PushConstants() = default;
  // Implicit on purpose: `.push = push` in a Dispatch initializer.
  template <class Block>
  requires(std::is_trivially_copyable_v<Block> && !std::is_same_v<Block, PushConstants>)
      PushConstants(const Block& block)
      : data(&block), bytes(sizeof(Block)) {
    static_assert(sizeof(Block) <= 128, "push constants: Vulkan guarantees only 128 bytes");
  }
};

struct Dispatch {
  std::string shader;                             // pipeline: shaders/<shader>.comp or a variant
  std::span<const uint32_t> specialization = {};  // constant_id 0, 1, ...: tile, workgroup sizes
  PushConstants push;                             // the wrapper's push-constant struct
  Grid grid;                                      // workgroups in x, y, z
  // Every range the shader reads and every range it writes: the recorder derives barriers
  // from them.
  std::vector<BufferRange> reads;
  std::vector<BufferRange> writes;
  const char* label = nullptr;  // name in profiles and timings; the shader's name when null
};

// Records `dispatch` into `recorder`, with its pipeline from the context's cache.
void record_dispatch(Recorder& recorder, const Dispatch& dispatch);

}  // namespace vkt::kernels
