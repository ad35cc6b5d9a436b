// Counter-based random numbers: Philox4x32-10, bit-identical to engine/kernels/random.hpp
// (32-bit integer multiplies, xors and adds only, which every device computes exactly).
//   counter = (index / 4, step, layer, 0), key = (seed, stream); uniform = (bits >> 8) * 2^-24

const uint STREAM_DROPOUT = 1u;
const uint STREAM_INIT = 2u;
const uint STREAM_DARE = 3u;  // merge: DARE drop masks (engine/kernels/merge.hpp)

uvec4 philox4x32_10(uvec4 counter, uvec2 key) {
  for (int round = 0; round < 10; round++) {
    uint high0, low0, high1, low1;
    umulExtended(0xD2511F53u, counter.x, high0, low0);
    umulExtended(0xCD9E8D57u, counter.z, high1, low1);
    counter = uvec4(high1 ^ counter.y ^ key.x, low1, high0 ^ counter.w ^ key.y, low0);
    key += uvec2(0x9E3779B9u, 0xBB67AE85u);  // golden ratio, sqrt(3) - 1
  }
  return counter;
}

// The random words of elements 4*group .. 4*group+3.
uvec4 random_bits4(uint seed, uint stream, uint step, uint layer, uint group) {
  return philox4x32_10(uvec4(group, step, layer, 0u), uvec2(seed, stream));
}

// 24 bits -> [0, 1), exact in fp32.
float uniform_from_bits(uint bits) { return float(bits >> 8) * (1.0 / 16777216.0); }
