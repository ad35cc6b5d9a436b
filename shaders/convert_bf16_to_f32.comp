#version 460
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
// bf16 bits -> fp32 (the bits shifted up; exact).
#include "common.glsl"
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Uint16Buffer { uint16_t data[]; };
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t source;       // (n) bf16 bits
  uint64_t destination;  // (n) fp32
  uint n;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  UintBuffer(p.destination).data[i] = uint(Uint16Buffer(p.source).data[i]) << 16;
}
