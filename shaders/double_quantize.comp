#version 460
#extension GL_GOOGLE_include_directive : require
// bitsandbytes' double quantization of the NF4 absmax (quantize_blockwise(absmax - offset,
// blocksize=256) with the signed dynamic map): one workgroup per 256 blocks, one invocation per
// block. Same results as engine/quant double_quantize().
#include "common.glsl"
#include "quant.glsl"
#include "quant_encode.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t absmax;         // (blocks) fp32
  uint64_t offset;         // (1) fp32: the mean of absmax (absmax_mean)
  uint64_t absmax_codes;   // (blocks) uint8
  uint64_t absmax_scales;  // (ceil(blocks / 256)) fp32
  uint blocks;
} p;

shared uint max_partial[256];

void main() {
  uint group = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  if (group * 256u >= p.blocks) return;  // the padding of a 2-D grid (uniform per workgroup)
  uint t = gl_LocalInvocationID.x;
  uint block = group * 256u + t;
  bool valid = block < p.blocks;
  float offset = FloatBuffer(p.offset).data[0];
  precise float centered = valid ? FloatBuffer(p.absmax).data[block] - offset : 0.0;
  max_partial[t] = floatBitsToUint(centered) & 0x7fffffffu;
  barrier();
  for (uint stride = 128u; stride > 0u; stride >>= 1) {
    if (t < stride) max_partial[t] = max(max_partial[t], max_partial[t + stride]);
    barrier();
  }
  uint max_bits = max_partial[0];
  if (t == 0u) UintBuffer(p.absmax_scales).data[group] = max_bits;
  if (!valid) return;
  bool zero_group = max_bits < 0x00800000u;  // bitsandbytes: NaN -> code 0
  float reciprocal = zero_group ? 0.0 : uintBitsToFloat(quant_div_bits(0x3f800000u, max_bits));
  precise float normalized = centered * reciprocal;
  quant_store_byte(p.absmax_codes, block, zero_group ? 0u : dynamic_map_encode(normalized));
}
