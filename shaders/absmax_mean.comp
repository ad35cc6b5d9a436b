#version 460
#extension GL_GOOGLE_include_directive : require
// The mean of the NF4 absmax values (bitsandbytes' double-quant offset), rounded once to fp32
// from an exact 64-bit fixed-point sum: the same value as engine/quant absmax_mean() in any
// reduction order. One workgroup.
#include "common.glsl"
#include "quant.glsl"
#include "quant_encode.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t absmax;  // (blocks) fp32, non-negative
  uint64_t mean;    // (1) fp32
  uint blocks;
} p;

shared uint max_partial[256];
shared uint64_t sum_partial[256];

void main() {
  uint t = gl_LocalInvocationID.x;
  UintBuffer values = UintBuffer(p.absmax);
  uint largest = 0u;
  for (uint b = t; b < p.blocks; b += 256u) largest = max(largest, values.data[b]);
  max_partial[t] = largest;
  barrier();
  for (uint stride = 128u; stride > 0u; stride >>= 1) {
    if (t < stride) max_partial[t] = max(max_partial[t], max_partial[t + stride]);
    barrier();
  }
  uint max_bits = max_partial[0];
  int length = findMSB(p.blocks) + 1;  // k: blocks < 2^k
  int max_field = max(int(max_bits >> 23), 1);
  uint64_t sum = 0ul;
  for (uint b = t; b < p.blocks; b += 256u) {
    uint bits = values.data[b];
    int field = int(bits >> 23);
    uint64_t mantissa = uint64_t((bits & 0x7fffffu) | (field > 0 ? 0x800000u : 0u));
    int shift = max(field, 1) - max_field + 39 - length;  // value * 2^(189 - k - max_field)
    sum += shift >= 0 ? mantissa << shift : (shift > -64 ? mantissa >> (-shift) : 0ul);
  }
  sum_partial[t] = sum;
  barrier();
  for (uint stride = 128u; stride > 0u; stride >>= 1) {
    if (t < stride) sum_partial[t] += sum_partial[t + stride];
    barrier();
  }
  if (t == 0u) {
    uint mean_bits = max_bits == 0u || p.blocks == 0u
                         ? 0u
                         : quant_round_ratio_bits(sum_partial[0], uint64_t(p.blocks), -(189 - length - max_field));
    UintBuffer(p.mean).data[0] = mean_bits;
  }
}
