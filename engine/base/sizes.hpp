#pragma once
// Sizes read from files are untrusted: products of them are checked for 64-bit overflow (a wrapped
// product would size a tiny buffer for a huge tensor), and shapes print the same way in every message.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vkt {

// a * b, or nullopt when it overflows 64 bits.
inline std::optional<uint64_t> checked_multiply(uint64_t a, uint64_t b) {
  uint64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// "[2, 3, 5]"
inline std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); i++) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

}  // namespace vkt
