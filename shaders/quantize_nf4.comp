#version 460
#extension GL_GOOGLE_include_directive : require
// NF4 codes and absmax of x (bitsandbytes quantize_4bit, quant_type "nf4"); one invocation per
// block. The tail block is padded with zeros. Same results as engine/quant quantize_nf4().
#include "common.glsl"
#include "quant.glsl"
#include "quant_encode.glsl"
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint64_t x;       // (n) fp32
  uint64_t codes;   // (blocks * block_size / 2) uint8, written as whole words
  uint64_t absmax;  // (blocks) fp32
  uint64_t n;
  uint block_size;  // a power of two >= 8
  uint blocks;
} p;

uint element_bits(uint64_t i) { return i < p.n ? UintBuffer(p.x + i * 4ul).data[0] : 0u; }

void main() {
  uint block = global_index_1d(64);
  if (block >= p.blocks) return;
  uint64_t start = uint64_t(block) * p.block_size;
  uint64_t end = min(start + p.block_size, p.n);
  uint max_bits = 0u;  // max |x| on bit patterns: exact, and no subnormal is flushed
  for (uint64_t i = start; i < end; i++) max_bits = max(max_bits, UintBuffer(p.x + i * 4ul).data[0] & 0x7fffffffu);
  UintBuffer(p.absmax).data[block] = max_bits;
  // A zero block: bitsandbytes computes 0 * (1/0) = NaN, which its comparison tree sends to code 0.
  bool zero_block = max_bits < 0x00800000u;
  float reciprocal = zero_block ? 0.0 : uintBitsToFloat(quant_div_bits(0x3f800000u, max_bits));
  for (uint64_t i = start; i < start + p.block_size; i += 8ul) {
    uint word = 0u;
    for (uint j = 0u; j < 8u; j++) {
      precise float normalized = uintBitsToFloat(element_bits(i + j)) * reciprocal;
      uint code = zero_block ? 0u : nf4_encode(normalized);
      word |= code << (8u * (j >> 1) + ((j & 1u) == 0u ? 4u : 0u));  // first element: high nibble
    }
    UintBuffer(p.codes + (i >> 1)).data[0] = word;
  }
}
