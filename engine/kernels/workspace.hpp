#pragma once
// Small helpers shared by the kernel wrappers of this directory: sub-ranges of a workspace and
// size checks on the ranges a wrapper is given.
#include <string>

#include "engine/base/error.hpp"
#include "engine/kernels/launch.hpp"

namespace vkt::kernels {

inline VkDeviceSize align_up(VkDeviceSize value, VkDeviceSize alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// `bytes` bytes of `range` starting `offset` bytes in.
inline BufferRange slice(const BufferRange& range, VkDeviceSize offset, VkDeviceSize bytes) {
  VKT_ASSERT(offset + bytes <= range.bytes, "slice beyond its range");
  return {range.buffer, range.offset + offset, bytes, range.address + offset};
}

// A wrapper's check that a tensor it was given holds at least `bytes` bytes.
inline void require_bytes(const BufferRange& range, uint64_t bytes, const char* kernel, const char* tensor) {
  VKT_ASSERT(range.bytes >= bytes, std::string(kernel) + ": " + tensor + " holds " + std::to_string(range.bytes) +
                                       " bytes, needs " + std::to_string(bytes));
}

// Element counts that index a tensor in the shaders must fit their 32-bit indices.
inline void require_index_range(uint64_t elements, const char* kernel) {
  VKT_ASSERT(elements <= 0xffffffffull, std::string(kernel) + ": more than 2^32 elements; split the call");
}

}  // namespace vkt::kernels
