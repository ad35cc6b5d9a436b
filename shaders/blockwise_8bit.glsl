// bitsandbytes' blockwise dynamic 8-bit quantization (blocks of 256 = one workgroup of 256
// threads, one element per thread), bit-exact with bitsandbytes 0.50.2's CPU quantize_blockwise:
//   absmax = max |x| over the block; a zero block gets code 0
//   v = clamp(x * (1 / absmax), -1, 1);  i = trunc(((v + 1) * 0.5) * 65535 + 0.5)
//   code = #{k : threshold[k] <= i}      (dynamic_maps.glsl; = bnb's 65536-entry table lookup)
// and value = map[code] * absmax. Every step is one correctly rounded fp32 operation (`precise`
// keeps the compiler from fusing them into fma). Needs the shader's workgroup size to be 256, and
// must be called in uniform control flow (barriers).
#include "dynamic_maps.glsl"

shared float blockwise_map[2][256];       // [0]: signed map, [1]: unsigned map
shared uint blockwise_thresholds[2][256]; // 255 thresholds + a sentinel past every index
shared float blockwise_reduce[256];

// Loads both maps into shared memory; call once before the other functions.
void blockwise_load_maps() {
  uint t = gl_LocalInvocationID.x;
  blockwise_map[0][t] = uintBitsToFloat(dynamic_map_signed_bits[t]);
  blockwise_map[1][t] = uintBitsToFloat(dynamic_map_unsigned_bits[t]);
  blockwise_thresholds[0][t] = t < 255u ? dynamic_map_signed_thresholds[min(t, 254u)] : 65536u;
  blockwise_thresholds[1][t] = t < 255u ? dynamic_map_unsigned_thresholds[min(t, 254u)] : 65536u;
  barrier();
}

// max |x| over the workgroup's 256 values (threads without an element pass 0). Exact.
float blockwise_absmax(float x) {
  uint t = gl_LocalInvocationID.x;
  blockwise_reduce[t] = abs(x);
  barrier();
  for (uint stride = 128u; stride > 0u; stride >>= 1) {
    if (t < stride) blockwise_reduce[t] = max(blockwise_reduce[t], blockwise_reduce[t + stride]);
    barrier();
  }
  float result = blockwise_reduce[0];
  barrier();  // the next call may overwrite blockwise_reduce
  return result;
}

// 1 / absmax correctly rounded: one Newton step with fma refines a division that may be off by
// an ulp on GPUs (Vulkan allows 2.5 ulp); lavapipe's division is already exact.
float blockwise_reciprocal(float absmax) {
  precise float r = 1.0 / absmax;
  precise float e = fma(-absmax, r, 1.0);
  precise float refined = fma(r, e, r);
  return refined;
}

// fma(a, b, c) with one rounding, as the CPU's fused instruction that torch uses: Vulkan lets
// fma() be a multiply and an add rounded separately (lavapipe does that), which moves the 8-bit
// states off bitsandbytes' by an ulp and sometimes to a neighbouring code. The product's exact
// error (Veltkamp/Dekker split, no fma needed) and the sum's (TwoSum) are added back; the result is
// the correctly rounded a*b+c except in rare double-rounding ties. Finite, non-tiny inputs.
float exact_fma(float a, float b, float c) {
  precise float product = a * b;
  precise float a_split = 4097.0 * a, b_split = 4097.0 * b;
  precise float a_high = a_split - (a_split - a), b_high = b_split - (b_split - b);
  precise float a_low = a - a_high, b_low = b - b_high;
  precise float product_error = ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low;
  precise float sum = product + c;
  precise float c_part = sum - product;
  precise float sum_error = (product - (sum - c_part)) + (c - c_part);
  precise float result = sum + (sum_error + product_error);
  return result;
}

uint blockwise_code(float x, float inverse_absmax, uint map) {
  precise float v = clamp(x * inverse_absmax, -1.0, 1.0);
  precise float t = ((v + 1.0) * 0.5) * 65535.0 + 0.5;
  uint index = uint(t);
  // upper bound of index among the 256 sorted thresholds (the last one is the sentinel)
  uint low = 0u, high = 255u;
  while (low < high) {
    uint middle = (low + high) >> 1;
    if (blockwise_thresholds[map][middle] <= index) low = middle + 1u;
    else high = middle;
  }
  return low;
}

float blockwise_value(uint code, float absmax, uint map) {
  precise float value = blockwise_map[map][code] * absmax;
  return value;
}
