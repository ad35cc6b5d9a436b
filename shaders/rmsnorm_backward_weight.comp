#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// RMSNorm backward for the weight, pass 1: partial column sums of dy * x * rstd over row blocks
// (see column_sum.glsl); sum_rows_finish adds them into d_weight.
#include "common.glsl"
#include "act_storage.glsl"
#define THREADS 256
layout(local_size_x = THREADS) in;

layout(push_constant) uniform Push {
  uint64_t dy;        // (rows, cols) activation (act_storage.glsl)
  uint64_t x;         // (rows, cols) activation
  uint64_t rstd;      // (rows) fp32
  uint64_t partials;  // (row_blocks, cols) fp32
  uint rows, cols, col_lanes, rows_per_block;
} p;

#define TERM(row, column) \
  (act_load(ActBuffer(p.dy), (row) * p.cols + (column)) * (act_load(ActBuffer(p.x), (row) * p.cols + (column)) * FloatBuffer(p.rstd).data[row]))
#include "column_sum.glsl"
