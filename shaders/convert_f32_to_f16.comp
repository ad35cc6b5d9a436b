#version 460
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
// fp32 -> fp16 bits, bit-identical to engine/base/half.hpp float_to_half (convert.glsl).
#include "common.glsl"
#include "convert.glsl"
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Uint16Buffer { uint16_t data[]; };
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t source;       // (n) fp32
  uint64_t destination;  // (n) fp16 bits
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  // Read as bits: no float operation touches the value, so denormals are never flushed.
  float value = uintBitsToFloat(UintBuffer(p.source).data[i]);
  Uint16Buffer(p.destination).data[i] = uint16_t(float_to_half_bits(value));
}
