#version 460
#extension GL_GOOGLE_include_directive : require
// bitsandbytes' blockwise dynamic 8-bit quantization of x (blocks of 256, one workgroup each) and
// the round trip back: codes, absmax per block, and dequantized = map[code] * absmax. Exposes the
// quantizer adamw_8bit uses to the kernel tests (blockwise_8bit.glsl).
#include "common.glsl"
#include "blockwise_8bit.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;            // (n) fp32
  uint64_t codes;        // (ceil(n / 4)) uint: 4 codes per word, element 4w + j in byte j
  uint64_t absmax;       // (blocks) fp32
  uint64_t dequantized;  // (n) fp32
  uint n;
  uint map;  // 0: signed dynamic map, 1: unsigned
} p;

shared uint packed_codes[256];

void main() {
  blockwise_load_maps();
  uint block = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  uint t = gl_LocalInvocationID.x;
  uint i = block * 256u + t;
  bool inside = i < p.n;
  float x = inside ? FloatBuffer(p.x).data[i] : 0.0;
  float absmax = blockwise_absmax(x);
  uint code = !inside || absmax == 0.0 ? 0u : blockwise_code(x, blockwise_reciprocal(absmax), p.map);
  packed_codes[t] = code;
  barrier();
  if (t < 64u && block * 256u + 4u * t < p.n) {
    uint word = packed_codes[4u * t] | (packed_codes[4u * t + 1u] << 8) | (packed_codes[4u * t + 2u] << 16) |
                (packed_codes[4u * t + 3u] << 24);
    UintBuffer(p.codes).data[block * 64u + t] = word;
  }
  if (t == 0u) FloatBuffer(p.absmax).data[block] = absmax;
  if (inside) FloatBuffer(p.dequantized).data[i] = blockwise_value(code, absmax, p.map);
}
