// The GPU quantizers' arithmetic, the twin of engine/quant/formats.cpp: bitsandbytes' NF4 and
// dynamic-map encoders, round half away from zero, byte stores, and correctly rounded division
// done with integers. Include after quant.glsl.
//
// Why integers: Vulkan guarantees correctly rounded fp32 add/sub/mul but allows 2.5 ulp for a
// division, and a reciprocal one ulp off can move a value across a code threshold. So every
// quotient that decides a code is a 64-bit integer long division of the mantissas, rounded to
// nearest even exactly as IEEE division rounds; the CPU divides natively and gets the same bits.
// Elements are read as bit patterns (UintBuffer) so that no load can flush a subnormal.
#ifndef VKT_QUANT_ENCODE_GLSL
#define VKT_QUANT_ENCODE_GLSL

// bitsandbytes' dQuantizeNF4 thresholds, ascending: its fp32 literals in csrc/kernels.cu, each
// decimal rounded directly to fp32 as a C/CUDA `f` literal is (four of them are exact fp32 ties
// as doubles, so rounding through a double would move them by an ulp). Not `const`: see quant.glsl.
uint NF4_THRESHOLD_BITS[15] = uint[15](
    0xbf591cd9u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u,
    0xbe703cecu, 0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu,
    0x3df64863u, 0x3e5067e0u, 0x3e9582d4u, 0x3ec753f9u,
    0x3f006d03u, 0x3f248dafu, 0x3f5c89d9u);

// NF4 code of a normalized value: the number of thresholds strictly below it (the leaf of
// bitsandbytes' comparison tree; a value on a threshold takes the lower code).
uint nf4_encode(float x) {
  uint code = 0u;
  for (uint k = 0u; k < 15u; k++) code += x > uintBitsToFloat(NF4_THRESHOLD_BITS[k]) ? 1u : 0u;
  return code;
}

// bitsandbytes' dQuantize: 7 halving steps from 127 end on an even index p, then the nearer of p
// and its neighbour on x's side by the fp32 midpoint; a value on a midpoint takes the even index.
uint dynamic_map_encode(float x) {
  int p = 127;
  for (int step = 64; step > 0; step >>= 1) p += x > dynamic_map_value(uint(p)) ? step : -step;
  float value = dynamic_map_value(uint(p));
  if (x > value) {
    precise float midpoint = (dynamic_map_value(uint(p + 1)) + value) * 0.5;
    return uint(x > midpoint ? p + 1 : p);
  }
  if (p == 0) return 0u;
  precise float midpoint = (dynamic_map_value(uint(p - 1)) + value) * 0.5;
  return uint(x < midpoint ? p - 1 : p);
}

int quant_round_half_away(float q) {
  precise float magnitude = abs(q);
  float whole = floor(magnitude);
  precise float fraction = magnitude - whole;  // exact
  int rounded_magnitude = int(whole) + (fraction >= 0.5 ? 1 : 0);
  return q < 0.0 ? -rounded_magnitude : rounded_magnitude;
}

// Writes one byte of a uint8 array that is accessed as 32-bit words: other invocations write the
// neighbouring bytes of the same word, so the byte is cleared and set with atomics (which leave
// every other byte, including any past the array's end, unchanged).
void quant_store_byte(uint64_t address, uint64_t byte_index, uint value) {
  uint shift = uint(byte_index & 3ul) * 8u;
  UintBuffer word = UintBuffer(address + (byte_index >> 2) * 4ul);
  atomicAnd(word.data[0], ~(0xffu << shift));
  atomicOr(word.data[0], (value & 0xffu) << shift);
}

int quant_bit_width(uint64_t value) {
  uint high = uint(value >> 32);
  return high != 0u ? 33 + findMSB(high) : findMSB(uint(value)) + 1;
}

// Bits of the fp32 value nearest to numerator / denominator * 2^exponent (ties to even,
// subnormal results rounded correctly, +inf past FLT_MAX); numerator < 2^63, denominator < 2^33.
// Same steps as engine/quant round_ratio().
uint quant_round_ratio_bits(uint64_t numerator, uint64_t denominator, int exponent) {
  if (numerator == 0ul) return 0u;
  uint64_t quotient = numerator / denominator;
  uint64_t remainder = numerator - quotient * denominator;
  uint64_t mantissa;
  bool round_bit, sticky;
  if (quotient >= (1ul << 24)) {
    int shift = quant_bit_width(quotient) - 24;
    mantissa = quotient >> shift;
    round_bit = ((quotient >> (shift - 1)) & 1ul) != 0ul;
    sticky = (quotient & ((1ul << (shift - 1)) - 1ul)) != 0ul || remainder != 0ul;
    exponent += shift;
  } else {
    mantissa = quotient;
    for (int i = 0; i < 96 && mantissa < (1ul << 23); i++) {  // long division, one bit per step
      remainder <<= 1;
      uint64_t bit = remainder >= denominator ? 1ul : 0ul;
      remainder -= bit * denominator;
      mantissa = (mantissa << 1) | bit;
      exponent--;
    }
    remainder <<= 1;
    round_bit = remainder >= denominator;
    if (round_bit) remainder -= denominator;
    sticky = remainder != 0ul;
  }
  int field = exponent + 150;
  if (field < 1) {
    int shift = 1 - field;
    if (shift > 25) {
      mantissa = 0ul;
      round_bit = false;
      sticky = true;
    } else {
      sticky = sticky || round_bit || (mantissa & ((1ul << (shift - 1)) - 1ul)) != 0ul;
      round_bit = ((mantissa >> (shift - 1)) & 1ul) != 0ul;
      mantissa >>= shift;
    }
    field = 1;
  }
  if (round_bit && (sticky || (mantissa & 1ul) != 0ul)) mantissa++;
  if (mantissa == (1ul << 24)) {
    mantissa >>= 1;
    field++;
  }
  if (field >= 255) return 0x7f800000u;
  return mantissa < (1ul << 23) ? uint(mantissa) : (uint(field) << 23) | uint(mantissa - (1ul << 23));
}

// |value| = mantissa * 2^exponent with mantissa in [2^23, 2^24); bits of a nonzero finite value.
void quant_decompose(uint bits, out uint64_t mantissa, out int exponent) {
  uint field = (bits >> 23) & 0xffu;
  uint fraction = bits & 0x7fffffu;
  if (field == 0u) {
    int shift = 23 - findMSB(fraction);
    mantissa = uint64_t(fraction) << shift;
    exponent = -149 - shift;
  } else {
    mantissa = uint64_t(fraction | 0x800000u);
    exponent = int(field) - 150;
  }
}

// Bits of a / b correctly rounded (IEEE): a finite, b nonzero finite, given as bit patterns.
uint quant_div_bits(uint a_bits, uint b_bits) {
  uint sign = (a_bits ^ b_bits) & 0x80000000u;
  if ((a_bits & 0x7fffffffu) == 0u) return sign;
  uint64_t mantissa_a, mantissa_b;
  int exponent_a, exponent_b;
  quant_decompose(a_bits, mantissa_a, exponent_a);
  quant_decompose(b_bits, mantissa_b, exponent_b);
  return sign | quant_round_ratio_bits(mantissa_a << 24, mantissa_b, exponent_a - exponent_b - 24);
}

float quant_div(float a, float b) { return uintBitsToFloat(quant_div_bits(floatBitsToUint(a), floatBitsToUint(b))); }

#endif  // VKT_QUANT_ENCODE_GLSL
