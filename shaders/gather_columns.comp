#version 460
#extension GL_GOOGLE_include_directive : require
// out[r, i] = x[r, indices[i]]: the logit gradients of the trained rows of a tied lm_head (PEFT's
// trainable tokens). Indices >= cols give 0.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;        // (rows, cols) fp32
  uint64_t indices;  // (count) uint32
  uint64_t out_;     // (rows, count) fp32
  uint rows, cols, count;
} p;

void main() {
  uint index = global_index_1d(256);
  if (index >= p.rows * p.count) return;
  uint row = index / p.count;
  uint column = UintBuffer(p.indices).data[index - row * p.count];
  FloatBuffer(p.out_).data[index] = column < p.cols ? FloatBuffer(p.x).data[row * p.cols + column] : 0.0;
}
