#ifndef CONVERT_GLSL  // included by act_storage.glsl and by shaders that convert tables
#define CONVERT_GLSL
// fp16 and bf16 bit conversions in integer arithmetic, bit-identical to engine/base/half.hpp:
// round to nearest even, NaN stays NaN (quiet), overflow to infinity, fp16 subnormals kept.
// Done with integers rather than float16_t casts because the rounding mode and denormal
// handling of hardware conversions are implementation-defined in Vulkan.

uint float_to_half_bits(float value) {
  uint bits = floatBitsToUint(value);
  uint sign = (bits >> 16) & 0x8000u;
  uint magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
  if (magnitude < 0x38800000u) {
    // Subnormal half (or zero): shift the mantissa with its implicit bit, round to nearest even.
    if (magnitude < 0x33000000u) return sign;  // below half of the smallest subnormal
    uint exponent = magnitude >> 23;
    uint mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    uint shift = 126u - exponent;  // 14..24
    uint half_mantissa = mantissa >> shift;
    uint remainder = mantissa & ((1u << shift) - 1u);
    uint halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (half_mantissa & 1u) != 0u)) half_mantissa++;
    return sign | half_mantissa;
  }
  // Normal: rebias the exponent (127 -> 15), round the 13 dropped mantissa bits to nearest even.
  uint rebased = magnitude - (112u << 23);
  uint rounded = rebased + 0xfffu + ((rebased >> 13) & 1u);
  return sign | (rounded >> 13);
}

float half_bits_to_float(uint value) {
  uint sign = (value & 0x8000u) << 16;
  uint exponent = (value >> 10) & 0x1fu;
  uint mantissa = value & 0x3ffu;
  if (exponent == 0u) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32 (a normal float).
    float magnitude = float(mantissa) * (1.0 / 16777216.0);
    return uintBitsToFloat(sign | floatBitsToUint(magnitude));
  }
  if (exponent == 31u) return uintBitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  return uintBitsToFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint float_to_bf16_bits(float value) {
  uint bits = floatBitsToUint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return ((bits >> 16) | 0x40u) & 0xffffu;  // quiet NaN
  uint rounding = 0x7fffu + ((bits >> 16) & 1u);
  return ((bits + rounding) >> 16) & 0xffffu;
}

float bf16_bits_to_float(uint value) { return uintBitsToFloat(value << 16); }
#endif
