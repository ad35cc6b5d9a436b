#pragma once
// fp16 and bf16 conversions on the CPU, bit-compatible with what the shaders do:
// fp32 -> fp16/bf16 rounds to nearest even; NaN stays NaN; overflow goes to infinity.
#include <cstdint>
#include <cstring>

namespace vkt {

inline uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}
inline float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

inline uint16_t float_to_bf16(float value) {
  uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}
inline float bf16_to_float(uint16_t value) { return bits_float(static_cast<uint32_t>(value) << 16); }

uint16_t float_to_half(float value);
float half_to_float(uint16_t value);

}  // namespace vkt
