#version 460
#extension GL_GOOGLE_include_directive : require
// Deterministic sum over rows, pass 2: out[c] (+)= sum of partials[b, c] over row blocks b in order.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t partials;  // (row_blocks, cols) fp32
  uint64_t out_;      // (cols) fp32
  uint cols, row_blocks;
  uint accumulate;    // 1: out += sum (gradient accumulation), 0: out = sum
} p;

void main() {
  uint column = global_index_1d(256);
  if (column >= p.cols) return;
  FloatBuffer partials = FloatBuffer(p.partials);
  float sum = 0.0;
  for (uint b = 0; b < p.row_blocks; b++) sum += partials.data[b * p.cols + column];
  FloatBuffer out_ = FloatBuffer(p.out_);
  out_.data[column] = p.accumulate != 0u ? out_.data[column] + sum : sum;
}
