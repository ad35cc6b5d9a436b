#version 460
#extension GL_GOOGLE_include_directive : require
// Deterministic sum over rows, pass 1: partial column sums of x over row blocks (column_sum.glsl).
#include "common.glsl"
#define THREADS 256
layout(local_size_x = THREADS) in;

layout(push_constant) uniform Push {
  uint64_t x;         // (rows, cols) fp32
  uint64_t partials;  // (row_blocks, cols) fp32
  uint rows, cols, col_lanes, rows_per_block;
} p;

#define TERM(row, column) FloatBuffer(p.x).data[(row) * p.cols + (column)]
#include "column_sum.glsl"
