#version 460
#extension GL_GOOGLE_include_directive : require
// y[r, c] = x[r, c] * scale[c]: a per-channel (column) scale, IA3's learned vector on a linear
// layer's input or output. y may be x. With rows = 1 and cols = n it is an element-wise product.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;      // (rows, cols) fp32
  uint64_t scale;  // (cols) fp32
  uint64_t y;      // (rows, cols) fp32
  uint n;          // rows * cols
  uint cols;
} p;

void main() {
  uint i = global_index_1d(256);
  if (i >= p.n) return;
  FloatBuffer(p.y).data[i] = FloatBuffer(p.x).data[i] * FloatBuffer(p.scale).data[i % p.cols];
}
