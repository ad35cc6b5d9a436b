#pragma once
// Sub-ranges of the buffers a kernel wrapper is given (workspace slices) and the checks every
// wrapper makes on them before it records a dispatch.
#include <string>
#include <string_view>

#include "engine/base/error.hpp"
#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

inline VkDeviceSize align_up(VkDeviceSize value, VkDeviceSize alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// `bytes` bytes of `range` starting `offset` bytes in.
inline BufferRange slice(const BufferRange& range, VkDeviceSize offset, VkDeviceSize bytes) {
  VKT_ASSERT(offset + bytes <= range.bytes, "slice beyond its range");
  return {range.buffer, range.offset + offset, bytes, range.address + offset};
}

// A wrapper's check that a tensor it was given holds at least `bytes` bytes: each range a kernel
// reads or writes is checked against the bytes the op needs, naming the op and the tensor.
inline void require_bytes(const BufferRange& range, uint64_t bytes, std::string_view op, std::string_view tensor) {
  VKT_ASSERT(range.bytes >= bytes, std::string(op) + ": " + std::string(tensor) + " holds " +
                                       std::to_string(range.bytes) + " bytes, needs " + std::to_string(bytes));
}

// Element counts that index a tensor in the shaders must fit their 32-bit indices.
inline void require_index_range(uint64_t elements, std::string_view op) {
  VKT_ASSERT(elements <= 0xffffffffull, std::string(op) + ": more than 2^32 elements; split the call");
}

}  // namespace vkt::kernels
