#version 460
#extension GL_GOOGLE_include_directive : require
// Any weight format -> fp32 through quant.glsl (the functions a matmul load stage calls); eight
// elements per invocation, through quant_weight8() or, with per_element set (and for the tail),
// quant_weight(). Same results as engine/quant dequantize().
#include "common.glsl"
#include "quant.glsl"
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  QuantWeight weight;
  uint64_t out_values;  // (n) fp32
  uint64_t n;
  uint per_element;     // 1: decode every element with quant_weight() (tests both paths)
} p;

void write(uint64_t i, float value) { FloatBuffer(p.out_values + i * 4ul).data[0] = value; }

void main() {
  uint64_t first = uint64_t(global_index_1d(64)) * 8ul;
  if (first >= p.n) return;
  if (first + 8ul <= p.n && p.per_element == 0u) {
    vec4 lo, hi;
    quant_weight8(p.weight, first, lo, hi);
    for (uint j = 0u; j < 4u; j++) {
      write(first + j, lo[j]);
      write(first + 4ul + j, hi[j]);
    }
  } else {
    for (uint64_t i = first; i < min(first + 8ul, p.n); i++) write(i, quant_weight(p.weight, i));
  }
}
