// NF4 values of both nibbles of a code byte at once, for the matmul's load stage: entry b holds
// NF4_TABLE_BITS[b >> 4] (the byte's first element, high nibble) in its low 32 bits and
// NF4_TABLE_BITS[b & 15] (the second, low nibble) in its high 32 bits. On lavapipe a table read
// costs one scalar access per lane whatever its width, so one 64-bit read per two elements
// instead of one 32-bit read per element made an NF4 matmul_nt about 8% faster (M=512, 2048^2).
// Generated from quant.glsl's NF4_TABLE_BITS (the same bit patterns); tests/test_kernels_matmul.cpp
// checks every byte value against quant::dequantize. Module-scope and not const, like quant.glsl's
// tables (see there why). Include after quant.glsl.
//   python: [t[b >> 4] | t[b & 15] << 32 for b in range(256)], t = NF4_TABLE_BITS
#ifndef VKT_NF4_PAIRS_GLSL
#define VKT_NF4_PAIRS_GLSL

uint64_t NF4_PAIR_BITS[256] = uint64_t[256](
    0xbf800000bf800000ul, 0xbf3239b1bf800000ul, 0xbf066b30bf800000ul, 0xbeca32a0bf800000ul,
    0xbe91a24dbf800000ul, 0xbe3d353fbf800000ul, 0xbdba7871bf800000ul, 0x00000000bf800000ul,
    0x3da2faffbf800000ul, 0x3e24cae3bf800000ul, 0x3e7c04ddbf800000ul, 0x3ead033abf800000ul,
    0x3ee1a4b8bf800000ul, 0x3f1007abbf800000ul, 0x3f3913b3bf800000ul, 0x3f800000bf800000ul,
    0xbf800000bf3239b1ul, 0xbf3239b1bf3239b1ul, 0xbf066b30bf3239b1ul, 0xbeca32a0bf3239b1ul,
    0xbe91a24dbf3239b1ul, 0xbe3d353fbf3239b1ul, 0xbdba7871bf3239b1ul, 0x00000000bf3239b1ul,
    0x3da2faffbf3239b1ul, 0x3e24cae3bf3239b1ul, 0x3e7c04ddbf3239b1ul, 0x3ead033abf3239b1ul,
    0x3ee1a4b8bf3239b1ul, 0x3f1007abbf3239b1ul, 0x3f3913b3bf3239b1ul, 0x3f800000bf3239b1ul,
    0xbf800000bf066b30ul, 0xbf3239b1bf066b30ul, 0xbf066b30bf066b30ul, 0xbeca32a0bf066b30ul,
    0xbe91a24dbf066b30ul, 0xbe3d353fbf066b30ul, 0xbdba7871bf066b30ul, 0x00000000bf066b30ul,
    0x3da2faffbf066b30ul, 0x3e24cae3bf066b30ul, 0x3e7c04ddbf066b30ul, 0x3ead033abf066b30ul,
    0x3ee1a4b8bf066b30ul, 0x3f1007abbf066b30ul, 0x3f3913b3bf066b30ul, 0x3f800000bf066b30ul,
    0xbf800000beca32a0ul, 0xbf3239b1beca32a0ul, 0xbf066b30beca32a0ul, 0xbeca32a0beca32a0ul,
    0xbe91a24dbeca32a0ul, 0xbe3d353fbeca32a0ul, 0xbdba7871beca32a0ul, 0x00000000beca32a0ul,
    0x3da2faffbeca32a0ul, 0x3e24cae3beca32a0ul, 0x3e7c04ddbeca32a0ul, 0x3ead033abeca32a0ul,
    0x3ee1a4b8beca32a0ul, 0x3f1007abbeca32a0ul, 0x3f3913b3beca32a0ul, 0x3f800000beca32a0ul,
    0xbf800000be91a24dul, 0xbf3239b1be91a24dul, 0xbf066b30be91a24dul, 0xbeca32a0be91a24dul,
    0xbe91a24dbe91a24dul, 0xbe3d353fbe91a24dul, 0xbdba7871be91a24dul, 0x00000000be91a24dul,
    0x3da2faffbe91a24dul, 0x3e24cae3be91a24dul, 0x3e7c04ddbe91a24dul, 0x3ead033abe91a24dul,
    0x3ee1a4b8be91a24dul, 0x3f1007abbe91a24dul, 0x3f3913b3be91a24dul, 0x3f800000be91a24dul,
    0xbf800000be3d353ful, 0xbf3239b1be3d353ful, 0xbf066b30be3d353ful, 0xbeca32a0be3d353ful,
    0xbe91a24dbe3d353ful, 0xbe3d353fbe3d353ful, 0xbdba7871be3d353ful, 0x00000000be3d353ful,
    0x3da2faffbe3d353ful, 0x3e24cae3be3d353ful, 0x3e7c04ddbe3d353ful, 0x3ead033abe3d353ful,
    0x3ee1a4b8be3d353ful, 0x3f1007abbe3d353ful, 0x3f3913b3be3d353ful, 0x3f800000be3d353ful,
    0xbf800000bdba7871ul, 0xbf3239b1bdba7871ul, 0xbf066b30bdba7871ul, 0xbeca32a0bdba7871ul,
    0xbe91a24dbdba7871ul, 0xbe3d353fbdba7871ul, 0xbdba7871bdba7871ul, 0x00000000bdba7871ul,
    0x3da2faffbdba7871ul, 0x3e24cae3bdba7871ul, 0x3e7c04ddbdba7871ul, 0x3ead033abdba7871ul,
    0x3ee1a4b8bdba7871ul, 0x3f1007abbdba7871ul, 0x3f3913b3bdba7871ul, 0x3f800000bdba7871ul,
    0xbf80000000000000ul, 0xbf3239b100000000ul, 0xbf066b3000000000ul, 0xbeca32a000000000ul,
    0xbe91a24d00000000ul, 0xbe3d353f00000000ul, 0xbdba787100000000ul, 0x0000000000000000ul,
    0x3da2faff00000000ul, 0x3e24cae300000000ul, 0x3e7c04dd00000000ul, 0x3ead033a00000000ul,
    0x3ee1a4b800000000ul, 0x3f1007ab00000000ul, 0x3f3913b300000000ul, 0x3f80000000000000ul,
    0xbf8000003da2fafful, 0xbf3239b13da2fafful, 0xbf066b303da2fafful, 0xbeca32a03da2fafful,
    0xbe91a24d3da2fafful, 0xbe3d353f3da2fafful, 0xbdba78713da2fafful, 0x000000003da2fafful,
    0x3da2faff3da2fafful, 0x3e24cae33da2fafful, 0x3e7c04dd3da2fafful, 0x3ead033a3da2fafful,
    0x3ee1a4b83da2fafful, 0x3f1007ab3da2fafful, 0x3f3913b33da2fafful, 0x3f8000003da2fafful,
    0xbf8000003e24cae3ul, 0xbf3239b13e24cae3ul, 0xbf066b303e24cae3ul, 0xbeca32a03e24cae3ul,
    0xbe91a24d3e24cae3ul, 0xbe3d353f3e24cae3ul, 0xbdba78713e24cae3ul, 0x000000003e24cae3ul,
    0x3da2faff3e24cae3ul, 0x3e24cae33e24cae3ul, 0x3e7c04dd3e24cae3ul, 0x3ead033a3e24cae3ul,
    0x3ee1a4b83e24cae3ul, 0x3f1007ab3e24cae3ul, 0x3f3913b33e24cae3ul, 0x3f8000003e24cae3ul,
    0xbf8000003e7c04ddul, 0xbf3239b13e7c04ddul, 0xbf066b303e7c04ddul, 0xbeca32a03e7c04ddul,
    0xbe91a24d3e7c04ddul, 0xbe3d353f3e7c04ddul, 0xbdba78713e7c04ddul, 0x000000003e7c04ddul,
    0x3da2faff3e7c04ddul, 0x3e24cae33e7c04ddul, 0x3e7c04dd3e7c04ddul, 0x3ead033a3e7c04ddul,
    0x3ee1a4b83e7c04ddul, 0x3f1007ab3e7c04ddul, 0x3f3913b33e7c04ddul, 0x3f8000003e7c04ddul,
    0xbf8000003ead033aul, 0xbf3239b13ead033aul, 0xbf066b303ead033aul, 0xbeca32a03ead033aul,
    0xbe91a24d3ead033aul, 0xbe3d353f3ead033aul, 0xbdba78713ead033aul, 0x000000003ead033aul,
    0x3da2faff3ead033aul, 0x3e24cae33ead033aul, 0x3e7c04dd3ead033aul, 0x3ead033a3ead033aul,
    0x3ee1a4b83ead033aul, 0x3f1007ab3ead033aul, 0x3f3913b33ead033aul, 0x3f8000003ead033aul,
    0xbf8000003ee1a4b8ul, 0xbf3239b13ee1a4b8ul, 0xbf066b303ee1a4b8ul, 0xbeca32a03ee1a4b8ul,
    0xbe91a24d3ee1a4b8ul, 0xbe3d353f3ee1a4b8ul, 0xbdba78713ee1a4b8ul, 0x000000003ee1a4b8ul,
    0x3da2faff3ee1a4b8ul, 0x3e24cae33ee1a4b8ul, 0x3e7c04dd3ee1a4b8ul, 0x3ead033a3ee1a4b8ul,
    0x3ee1a4b83ee1a4b8ul, 0x3f1007ab3ee1a4b8ul, 0x3f3913b33ee1a4b8ul, 0x3f8000003ee1a4b8ul,
    0xbf8000003f1007abul, 0xbf3239b13f1007abul, 0xbf066b303f1007abul, 0xbeca32a03f1007abul,
    0xbe91a24d3f1007abul, 0xbe3d353f3f1007abul, 0xbdba78713f1007abul, 0x000000003f1007abul,
    0x3da2faff3f1007abul, 0x3e24cae33f1007abul, 0x3e7c04dd3f1007abul, 0x3ead033a3f1007abul,
    0x3ee1a4b83f1007abul, 0x3f1007ab3f1007abul, 0x3f3913b33f1007abul, 0x3f8000003f1007abul,
    0xbf8000003f3913b3ul, 0xbf3239b13f3913b3ul, 0xbf066b303f3913b3ul, 0xbeca32a03f3913b3ul,
    0xbe91a24d3f3913b3ul, 0xbe3d353f3f3913b3ul, 0xbdba78713f3913b3ul, 0x000000003f3913b3ul,
    0x3da2faff3f3913b3ul, 0x3e24cae33f3913b3ul, 0x3e7c04dd3f3913b3ul, 0x3ead033a3f3913b3ul,
    0x3ee1a4b83f3913b3ul, 0x3f1007ab3f3913b3ul, 0x3f3913b33f3913b3ul, 0x3f8000003f3913b3ul,
    0xbf8000003f800000ul, 0xbf3239b13f800000ul, 0xbf066b303f800000ul, 0xbeca32a03f800000ul,
    0xbe91a24d3f800000ul, 0xbe3d353f3f800000ul, 0xbdba78713f800000ul, 0x000000003f800000ul,
    0x3da2faff3f800000ul, 0x3e24cae33f800000ul, 0x3e7c04dd3f800000ul, 0x3ead033a3f800000ul,
    0x3ee1a4b83f800000ul, 0x3f1007ab3f800000ul, 0x3f3913b33f800000ul, 0x3f8000003f800000ul);

// The two elements of code byte `code_byte` (first element first).
vec2 nf4_pair(uint code_byte) { return uintBitsToFloat(unpackUint2x32(NF4_PAIR_BITS[code_byte])); }

#endif  // VKT_NF4_PAIRS_GLSL
