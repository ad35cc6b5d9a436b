#version 460
#extension GL_GOOGLE_include_directive : require
// INT8 / INT4 / INT4-asym codes and scales of x (and zero points for INT4-asym); one invocation
// per block; the tail block is padded with zeros. Same results as engine/quant quantize_int().
#include "common.glsl"
#include "quant.glsl"
#include "quant_encode.glsl"
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint64_t x;       // (n) fp32
  uint64_t codes;   // int8: (blocks * block_size) int8; int4*: (blocks * block_size / 2) uint8
  uint64_t scales;  // (blocks) fp32
  uint64_t zeros;   // (blocks) uint8, int4_asym only
  uint64_t n;
  uint block_size;  // a power of two >= 8
  uint blocks;
  uint format;      // QUANT_INT8, QUANT_INT4 or QUANT_INT4_ASYM
} p;

float element(uint64_t i) { return i < p.n ? uintBitsToFloat(UintBuffer(p.x + i * 4ul).data[0]) : 0.0; }

void main() {
  uint block = global_index_1d(64);
  if (block >= p.blocks) return;
  uint64_t start = uint64_t(block) * p.block_size;
  uint64_t end = min(start + p.block_size, p.n);
  uint max_bits = 0u;
  float low = 0.0, high = 0.0;  // the range always includes 0 (engine/quant/quantize.hpp)
  for (uint64_t i = start; i < end; i++) {
    uint bits = UintBuffer(p.x + i * 4ul).data[0];
    max_bits = max(max_bits, bits & 0x7fffffffu);
    low = min(low, uintBitsToFloat(bits));
    high = max(high, uintBitsToFloat(bits));
  }
  uint scale_bits;
  if (p.format == QUANT_INT8) {
    scale_bits = quant_div_bits(max_bits, floatBitsToUint(127.0));
  } else if (p.format == QUANT_INT4) {
    scale_bits = quant_div_bits(max_bits, floatBitsToUint(7.0));
  } else {
    precise float range = high - low;
    scale_bits = quant_div_bits(floatBitsToUint(range), floatBitsToUint(15.0));
  }
  bool zero_block = scale_bits < 0x00800000u;  // below FLT_MIN: store 0 and the code of 0
  if (zero_block) scale_bits = 0u;
  float reciprocal = zero_block ? 0.0 : uintBitsToFloat(quant_div_bits(0x3f800000u, scale_bits));
  UintBuffer(p.scales).data[block] = scale_bits;
  int zero = 0;
  if (p.format == QUANT_INT4_ASYM) {
    precise float negative_low = -low * reciprocal;
    zero = zero_block ? 0 : clamp(quant_round_half_away(negative_low), 0, 15);
    quant_store_byte(p.zeros, block, uint(zero));
  }
  uint64_t per_word = p.format == QUANT_INT8 ? 4ul : 8ul;
  for (uint64_t i = start; i < start + p.block_size; i += per_word) {
    uint word = 0u;
    for (uint j = 0u; j < uint(per_word); j++) {
      precise float scaled = element(i + j) * reciprocal;
      int q = zero_block ? 0 : quant_round_half_away(scaled);
      if (p.format == QUANT_INT8) {
        word |= (uint(clamp(q, -127, 127)) & 0xffu) << (8u * j);
      } else {
        uint code = p.format == QUANT_INT4 ? uint(clamp(q, -8, 7) + 8) : uint(clamp(q + zero, 0, 15));
        word |= code << (8u * (j >> 1) + ((j & 1u) == 0u ? 4u : 0u));
      }
    }
    uint64_t byte_offset = p.format == QUANT_INT8 ? i : i >> 1;
    UintBuffer(p.codes + byte_offset).data[0] = word;
  }
}
