// ggml's block formats (a GGUF file's quantized tensors) decoded in a shader, straight from the raw
// blocks: the layouts of engine/quant/ggml_blocks.hpp, bit-identical to its dequantize_ggml (which is
// bit-exact with ggml's dequantize_row_*). Include after common.glsl; quant.glsl includes it.
//
// ---- Interface ----
// Format ids (the values of kernels::WeightFormat):
//   GGML_Q8_0 7, GGML_Q4_0 8, GGML_Q4_1 9, GGML_Q5_0 10, GGML_Q5_1 11, GGML_Q4_K 12, GGML_Q5_K 13, GGML_Q6_K 14
// vec4  ggml_weight4(uint64_t data, uint format, uint index)
//       elements index .. index+3 of the flattened weight (index % 4 == 0: four aligned elements
//       share one block, one scale and one 4-byte run of codes); data = the address of block 0.
// float ggml_weight(uint64_t data, uint format, uint index)    one element
// Blocks are 18..210 bytes and only 2-byte aligned, so a 4-byte run is read as the two 32-bit
// words around it: the data range must extend 4 bytes past the last block (kernels::ggml_tail_bytes).
// Every value is the same fp32 products and sums in the same order as the CPU (`precise`: no fused
// multiply-add); fp16 scales convert exactly (unpackHalf2x16).
#ifndef VKT_GGML_BLOCKS_GLSL
#define VKT_GGML_BLOCKS_GLSL

#define GGML_Q8_0 7u
#define GGML_Q4_0 8u
#define GGML_Q4_1 9u
#define GGML_Q5_0 10u
#define GGML_Q5_1 11u
#define GGML_Q4_K 12u
#define GGML_Q5_K 13u
#define GGML_Q6_K 14u

uint ggml_word(uint64_t data, uint word_index) { return UintBuffer(data + uint64_t(word_index) * 4ul).data[0]; }

// The 4 bytes at `byte` (any offset), little-endian.
uint ggml_u32(uint64_t data, uint byte) {
  uint word = byte >> 2, shift = (byte & 3u) * 8u;
  uint lo = ggml_word(data, word), hi = ggml_word(data, word + 1u);
  return shift == 0u ? lo : (lo >> shift) | (hi << (32u - shift));
}
// The fp16 value at an even `byte`.
float ggml_half(uint64_t data, uint byte) {
  return unpackHalf2x16(ggml_word(data, byte >> 2) >> ((byte & 2u) * 8u)).x;
}
uint ggml_byte(uint word, uint k) { return (word >> (8u * k)) & 0xffu; }
// Nibbles (shift 0: low, 4: high) of the four bytes of `word`.
uvec4 ggml_nibbles(uint word, uint shift) {
  return uvec4((word >> shift) & 15u, (word >> (shift + 8u)) & 15u, (word >> (shift + 16u)) & 15u,
               (word >> (shift + 24u)) & 15u);
}
// Bit `bit` of each of the four bytes of `word`.
uvec4 ggml_byte_bits(uint word, uint bit) {
  return uvec4((word >> bit) & 1u, (word >> (bit + 8u)) & 1u, (word >> (bit + 16u)) & 1u, (word >> (bit + 24u)) & 1u);
}

uint ggml_block_bytes(uint format) {
  switch (format) {
    case GGML_Q8_0: return 34u;
    case GGML_Q4_0: return 18u;
    case GGML_Q4_1: return 20u;
    case GGML_Q5_0: return 22u;
    case GGML_Q5_1: return 24u;
    case GGML_Q4_K: return 144u;
    case GGML_Q5_K: return 176u;
    default: return 210u;  // Q6_K
  }
}
uint ggml_block_shift(uint format) { return format >= GGML_Q4_K ? 8u : 5u; }

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (ggml's get_scale_min_k4) from the 12
// scale bytes s[0..11] held in three words.
uvec2 ggml_scale_min_k4(uint j, uint s0, uint s1, uint s2) {
  if (j < 4u) return uvec2(ggml_byte(s0, j) & 63u, ggml_byte(s1, j) & 63u);
  uint k = j - 4u;
  uint s_j4 = ggml_byte(s2, k), s_jm4 = ggml_byte(s0, k), s_j = ggml_byte(s1, k);
  return uvec2((s_j4 & 15u) | ((s_jm4 >> 6) << 4), (s_j4 >> 4) | ((s_j >> 6) << 4));
}

vec4 ggml_weight4(uint64_t data, uint format, uint index) {
  uint shift = ggml_block_shift(format);
  uint i = index & ((1u << shift) - 1u);  // position in the block
  uint base = (index >> shift) * ggml_block_bytes(format);
  if (format == GGML_Q8_0) {
    int q = int(ggml_u32(data, base + 2u + i));
    vec4 codes = vec4(bitfieldExtract(q, 0, 8), bitfieldExtract(q, 8, 8), bitfieldExtract(q, 16, 8),
                      bitfieldExtract(q, 24, 8));
    return codes * ggml_half(data, base);
  }
  if (format <= GGML_Q5_1) {
    // 32 elements: element i's low 4 bits in byte i % 16 of qs (the high nibble for i >= 16).
    bool with_min = format == GGML_Q4_1 || format == GGML_Q5_1;
    bool five = format == GGML_Q5_0 || format == GGML_Q5_1;
    uint qs = base + (with_min ? 4u : 2u) + (five ? 4u : 0u);
    uvec4 codes = ggml_nibbles(ggml_u32(data, qs + (i & 15u)), i >= 16u ? 4u : 0u);
    if (five) {
      uint high = ggml_u32(data, base + (with_min ? 4u : 2u)) >> i;
      codes |= uvec4(high & 1u, (high >> 1) & 1u, (high >> 2) & 1u, (high >> 3) & 1u) << 4;
    }
    float d = ggml_half(data, base);
    if (!with_min) return d * (vec4(ivec4(codes)) - (five ? 16.0 : 8.0));
    precise vec4 value = d * vec4(codes) + ggml_half(data, base + 2u);
    return value;
  }
  if (format == GGML_Q6_K) {
    uint half_index = i >> 7, group = (i >> 5) & 3u, l = i & 31u;
    uvec4 low = ggml_nibbles(ggml_u32(data, base + 64u * half_index + 32u * (group & 1u) + l), group >= 2u ? 4u : 0u);
    uint high_word = ggml_u32(data, base + 128u + 32u * half_index + l) >> (2u * group);
    uvec4 high = uvec4(high_word & 3u, (high_word >> 8) & 3u, (high_word >> 16) & 3u, (high_word >> 24) & 3u);
    int scale_code = bitfieldExtract(int(ggml_byte(ggml_u32(data, base + 192u + (i >> 4)), 0u)), 0, 8);
    precise float scale = ggml_half(data, base + 208u) * float(scale_code);
    precise vec4 value = scale * vec4(ivec4(low | (high << 4)) - 32);
    return value;
  }
  // Q4_K / Q5_K: 8 sub-blocks of 32; codes in 4 chunks of 32 bytes, two sub-blocks per chunk.
  bool five = format == GGML_Q5_K;
  uint sub = i >> 5, l = i & 31u;
  uvec2 scale_min = ggml_scale_min_k4(sub, ggml_word(data, (base + 4u) >> 2), ggml_word(data, (base + 8u) >> 2),
                                      ggml_word(data, (base + 12u) >> 2));
  uvec4 codes = ggml_nibbles(ggml_word(data, (base + (five ? 48u : 16u) + 32u * (sub >> 1) + l) >> 2), (sub & 1u) * 4u);
  if (five) codes |= ggml_byte_bits(ggml_word(data, (base + 16u + l) >> 2), sub) << 4;
  precise float sub_scale = ggml_half(data, base) * float(scale_min.x);
  precise float sub_min = ggml_half(data, base + 2u) * float(scale_min.y);
  precise vec4 value = sub_scale * vec4(codes) - sub_min;
  return value;
}

float ggml_weight(uint64_t data, uint format, uint index) { return ggml_weight4(data, format, index & ~3u)[index & 3u]; }

#endif  // VKT_GGML_BLOCKS_GLSL
