#version 460
#extension GL_GOOGLE_include_directive : require
//! variant f16: -DSTORAGE_F16
//! variant bf16: -DSTORAGE_BF16
// Inverted dropout, forward and backward (the backward is the same mask applied to dy):
//   y[i] = uniform(rng_seed, STREAM_DROPOUT, rng_step, layer, i) >= p ? x[i] * scale : 0
// with scale = 1 / (1 - p) rounded once on the host. The key comes from StepState, so a replayed
// command buffer draws new masks when the host advances rng_step, and a recomputed forward
// draws the same one. One thread per 4 elements (one Philox call).
#include "common.glsl"
#include "random.glsl"
#include "step_state.glsl"
#if defined(STORAGE_F16) || defined(STORAGE_BF16)
#extension GL_EXT_shader_16bit_storage : require
#endif
#if defined(STORAGE_F16)
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Values { float16_t data[]; };
float load_value(Values values, uint i) { return float(values.data[i]); }
void store_value(Values values, uint i, float value) { values.data[i] = float16_t(value); }
#elif defined(STORAGE_BF16)
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Values { uint16_t data[]; };
float load_value(Values values, uint i) { return uintBitsToFloat(uint(values.data[i]) << 16); }
void store_value(Values values, uint i, float value) {
  uint bits = floatBitsToUint(value);
  // Round to nearest even, NaN stays a quiet NaN (engine/base/half.hpp float_to_bf16).
  bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
  uint rounded = nan ? ((bits >> 16) | 0x40u) : ((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  values.data[i] = uint16_t(rounded);
}
#else
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Values { float data[]; };
float load_value(Values values, uint i) { return values.data[i]; }
void store_value(Values values, uint i, float value) { values.data[i] = value; }
#endif
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;           // (n) input (forward: x, backward: dy)
  uint64_t y;           // (n) output (forward: y, backward: dx); may equal x
  uint64_t step_state;  // StepState: rng_seed, rng_step
  uint n;
  uint layer;
  float p;              // drop probability
  float scale;          // 1 / (1 - p), 0 when p >= 1
} p;

void main() {
  uint group = global_index_1d(256);
  uint first = group * 4u;
  if (group >= (p.n + 3u) / 4u) return;
  StepStateBuffer state = StepStateBuffer(p.step_state);
  uvec4 bits = random_bits4(state.rng_seed, STREAM_DROPOUT, state.rng_step, p.layer, group);
  Values x = Values(p.x), y = Values(p.y);
  for (uint j = 0; j < 4u && first + j < p.n; j++) {
    float value = load_value(x, first + j);
    bool keep = uniform_from_bits(bits[j]) >= p.p;
    store_value(y, first + j, keep ? value * p.scale : 0.0);
  }
}
