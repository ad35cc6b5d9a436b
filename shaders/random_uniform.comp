#version 460
#extension GL_GOOGLE_include_directive : require
// out[i] = low + (high - low) * uniform(seed, stream, step, layer, i): setup work such as
// adapter initialization. One thread per 4 elements (one Philox call).
#include "common.glsl"
#include "random.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t out_values;  // (n) fp32
  uint n;
  uint seed;
  uint stream;
  uint step;
  uint layer;
  float low;
  float high;
} p;

void main() {
  uint group = global_index_1d(256);
  uint first = group * 4u;
  if (group >= (p.n + 3u) / 4u) return;
  uvec4 bits = random_bits4(p.seed, p.stream, p.step, p.layer, group);
  FloatBuffer values = FloatBuffer(p.out_values);
  for (uint j = 0; j < 4u && first + j < p.n; j++) {
    precise float value = p.low + (p.high - p.low) * uniform_from_bits(bits[j]);
    values.data[first + j] = value;
  }
}
