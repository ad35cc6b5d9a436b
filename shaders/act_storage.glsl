// Storage of activation tensors (engine kernels DType, RunSettings::activation_dtype): fp32 by
// default; a shader's "_f16" / "_bf16" variant (-DACT_F16 / -DACT_BF16) stores them in 16 bits.
// Arithmetic stays fp32: act_load widens, act_store rounds to nearest even with common.glsl's
// integer conversions (bit-identical to engine/base/half.hpp). Weights, statistics (rstd, lse)
// and losses are not activations and stay FloatBuffer. Include after common.glsl.
#if defined(ACT_F16) || defined(ACT_BF16)
#extension GL_EXT_shader_16bit_storage : require
#include "convert.glsl"
layout(buffer_reference, std430, buffer_reference_align = 2) buffer ActBuffer { uint16_t data[]; };
#if defined(ACT_F16)
float act_load(ActBuffer b, uint i) { return half_bits_to_float(uint(b.data[i])); }
void act_store(ActBuffer b, uint i, float v) { b.data[i] = uint16_t(float_to_half_bits(v)); }
#else
float act_load(ActBuffer b, uint i) { return bf16_bits_to_float(uint(b.data[i])); }
void act_store(ActBuffer b, uint i, float v) { b.data[i] = uint16_t(float_to_bf16_bits(v)); }
#endif
#else
layout(buffer_reference, std430, buffer_reference_align = 4) buffer ActBuffer { float data[]; };
float act_load(ActBuffer b, uint i) { return b.data[i]; }
void act_store(ActBuffer b, uint i, float v) { b.data[i] = v; }
#endif

// Groups of 2 and 4 consecutive activations (attention's head vectors, 4-element aligned):
// act_load2/act_store2 index pairs, act_load4/act_store4 quads, at a buffer address.
#if defined(ACT_F16) || defined(ACT_BF16)
#define ACT_16BIT
layout(buffer_reference, std430, buffer_reference_align = 4) buffer ActPairs { uint data[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) buffer ActQuads { uvec2 data[]; };
#if defined(ACT_F16)
float act_from_bits(uint bits) { return half_bits_to_float(bits); }
uint act_to_bits(float v) { return float_to_half_bits(v); }
#else
float act_from_bits(uint bits) { return bf16_bits_to_float(bits); }
uint act_to_bits(float v) { return float_to_bf16_bits(v); }
#endif
// Element 2i in the low half of word i (little-endian, as the host writes uint16 arrays).
vec2 act_unpack2(uint w) { return vec2(act_from_bits(w & 0xffffu), act_from_bits(w >> 16)); }
uint act_pack2(vec2 v) { return act_to_bits(v.x) | (act_to_bits(v.y) << 16); }
vec2 act_load2(uint64_t address, uint pair) { return act_unpack2(ActPairs(address).data[pair]); }
void act_store2(uint64_t address, uint pair, vec2 v) { ActPairs(address).data[pair] = act_pack2(v); }
vec4 act_load4(uint64_t address, uint quad) {
  uvec2 w = ActQuads(address).data[quad];
  return vec4(act_unpack2(w.x), act_unpack2(w.y));
}
void act_store4(uint64_t address, uint quad, vec4 v) { ActQuads(address).data[quad] = uvec2(act_pack2(v.xy), act_pack2(v.zw)); }
#else
vec4 act_load4(uint64_t address, uint quad) { return Vec4Buffer(address).data[quad]; }
void act_store4(uint64_t address, uint quad, vec4 v) { Vec4Buffer(address).data[quad] = v; }
#endif
