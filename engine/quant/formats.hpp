#pragma once
// The number formats behind the quantized weights: bitsandbytes' NF4 code table and its
// decision thresholds, bitsandbytes' signed 8-bit dynamic map (double quantization of the NF4
// absmax) with its rounding rule, and the exact arithmetic that lets the GPU quantizers
// (shaders/quant_encode.glsl) reproduce these CPU functions bit for bit.
//
// Why exact arithmetic: Vulkan guarantees correctly rounded fp32 add, sub and mul, but a
// division may be off by 2.5 ulp and a float sum depends on the reduction order. So every
// division that decides a code is an IEEE division here (correctly rounded) and an integer
// long division on the GPU, and the mean of the NF4 absmax values is computed from a 64-bit
// fixed-point sum, which is exact and order-independent on both sides.
#include <array>
#include <cstddef>
#include <cstdint>

namespace vkt::quant {

// ---- NF4 (bitsandbytes get_4bit_type("nf4"), quantiles of N(0,1) scaled to [-1, 1]) ----

// The 16 code values, code 0 = -1.0, code 7 = 0.0, code 15 = 1.0.
const std::array<float, 16>& nf4_table();
// bitsandbytes' dQuantizeNF4 decision thresholds in ascending order: the fp32 values of the
// literals of its comparison tree (midpoints between neighbouring codes), each decimal rounded
// once to fp32 as a C/CUDA `f` literal is (four are exact fp32 ties as doubles, so a parse
// through double would move them by an ulp). Every comparison
// there is `x > threshold`, so a value exactly on a threshold takes the LOWER code.
const std::array<float, 15>& nf4_thresholds();
// The NF4 code of a normalized value x = w * (1 / absmax): the number of thresholds below x.
// NaN gives 0, as bitsandbytes' tree does (all comparisons false).
uint8_t nf4_code(float normalized);

// ---- bitsandbytes' signed dynamic map: create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8), the code of quantize_blockwise and so of the double-quantized absmax ----

// 256 sorted fp32 values: 127 negative, 0.0 at index 127, 127 positive, 1.0 at index 255
// (it is not normalized: the most negative value is -0.99296874, not -1).
const std::array<float, 256>& dynamic_map();
// bitsandbytes' dQuantize (non-stochastic): a 7-step binary search over the map that always ends
// on an even index p, then the nearer of p and its neighbour on x's side, comparing with the
// fp32 midpoint (a + b) * 0.5f. A value exactly on a midpoint takes the even index; values
// beyond the ends take 0 or 255; NaN gives 0.
uint8_t dynamic_map_code(float normalized);

// ---- Exact arithmetic shared with the GPU (the shaders implement the same integer steps) ----

// The fp32 value nearest to numerator / denominator * 2^exponent (ties to even; subnormal
// results are rounded correctly; +inf past FLT_MAX). numerator < 2^63, 0 < denominator < 2^33.
float round_ratio(uint64_t numerator, uint64_t denominator, int exponent);
// Correctly rounded a / b computed with round_ratio on the mantissas (what the GPU does):
// equals the IEEE quotient for finite a and nonzero finite b. Used by tests to prove the
// integer route right; the CPU quantizers divide natively.
float divide_exact(float a, float b);

// The mean of `count` non-negative finite values (bitsandbytes' offset = absmax.mean()),
// rounded once to the nearest fp32. The sum is taken in 64-bit fixed point: with k the bit
// length of count and E the exponent field of the largest value, every value is scaled by
// 2^(189 - k - max(E,1)) and truncated to an integer, so the sum stays below 2^63. Values down to
// max * 2^(k-40) are exact, smaller ones lose only bits below that grid; the result is the same
// on every device and in every reduction order. count = 0 or all zero -> 0.
float absmax_mean(const float* values, size_t count);

// q rounded half away from zero (exactly: 2.5 -> 3, -2.5 -> -3, 0.49999997 -> 0).
int round_half_away(float q);

// fp32 with the intermediate rounding forced (no fused multiply-add): `product` must be a
// product the caller wants rounded before it is added to something.
inline float rounded(float value) {
  volatile float stored = value;
  return stored;
}

}  // namespace vkt::quant
