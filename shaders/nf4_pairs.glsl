// NF4 values of both nibbles of a code byte at once, for the direct matmul body's load stage
// (lavapipe): entry b holds NF4_TABLE_BITS[b >> 4] (the byte's first element, high nibble) in its
// low 32 bits and NF4_TABLE_BITS[b & 15] (the second, low nibble) in its high 32 bits. On
// lavapipe a table read costs one scalar access per lane whatever its width, so one 64-bit read
// per two elements instead of one 32-bit read per element made an NF4 matmul_nt about 8% faster
// (M=512, 2048^2). The table is built at the start of each invocation by nf4_pairs_init() (256
// loop iterations, counted by lavapipe's loop limiter): written as a 256-entry literal it cost
// lavapipe ~0.3 s more per pipeline creation, for the same speed. GPUs keep quant.glsl's
// 16-entry table (a written private array would live in scratch memory there).
// tests/test_kernels_matmul.cpp checks every byte value against quant::dequantize.
// Include after quant.glsl.
#ifndef VKT_NF4_PAIRS_GLSL
#define VKT_NF4_PAIRS_GLSL

uint64_t NF4_PAIR_BITS[256];

void nf4_pairs_init() {
  for (uint b = 0; b < 256; b++) NF4_PAIR_BITS[b] = packUint2x32(uvec2(NF4_TABLE_BITS[b >> 4], NF4_TABLE_BITS[b & 15u]));
}

// The two elements of code byte `code_byte` (first element first).
vec2 nf4_pair(uint code_byte) { return uintBitsToFloat(unpackUint2x32(NF4_PAIR_BITS[code_byte])); }

#endif  // VKT_NF4_PAIRS_GLSL
