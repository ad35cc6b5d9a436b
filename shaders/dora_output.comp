#version 460
#extension GL_GOOGLE_include_directive : require
// DoRA's output: y[r, c] = v[r, c] * scale[c] (+ bias[c]), v = x·Wᵀ + s·(x·Aᵀ)·Bᵀ without the
// bias, scale = m / ‖W + s·B·A‖ per output channel (dora_norm.comp). y may be v.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t v;      // (rows, cols) fp32
  uint64_t scale;  // (cols) fp32
  uint64_t bias;   // (cols) fp32, or 0 for none
  uint64_t y;      // (rows, cols) fp32
  uint n;          // rows * cols
  uint cols;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  uint c = i % p.cols;
  float y = FloatBuffer(p.v).data[i] * FloatBuffer(p.scale).data[c];
  if (p.bias != 0) y += FloatBuffer(p.bias).data[c];
  FloatBuffer(p.y).data[i] = y;
}
