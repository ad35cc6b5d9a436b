#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Attention backward, dQ: one workgroup per (tile of BR query rows, kv head, sequence), as the
// forward. Q and dO stay in shared memory while V and K tiles stream through one buffer:
//   dP = dO vᵀ,  P = exp(scale q·kᵀ - lse) (recomputed),  dS = P ∘ (dP - delta),  dQ += scale dS K.
// A separate pass from dK/dV (which would need atomics to add dQ across key tiles): it
// recomputes the scores once more, and in exchange every gradient is written once, deterministically.
#include "common.glsl"

layout(push_constant) uniform Push {
  uint64_t q;            // (batch*seq_q, q_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t k;            // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t v;            // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t d_o;          // (batch*seq_q, q_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t lse;          // (batch, q_heads, seq_q) fp32 from the forward
  uint64_t delta;        // (batch, q_heads, seq_q) fp32 from attention_backward_delta
  uint64_t dq;           // (batch*seq_q, q_heads*HEAD_DIM) activation (act_storage.glsl), written
  uint64_t q_segments;   // (batch*seq_q) uint32, or 0: no segment masking
  uint64_t kv_segments;  // (batch*seq_kv) uint32
  uint batch;
  uint seq_q;
  uint seq_kv;
  uint q_heads;
  uint kv_heads;
  uint q_offset;
  float scale;
  float scale_log2;      // scale * log2(e)
  uint window;           // sliding window (0: none), see attention_mask.glsl
  float softcap_log2;    // score soft-capping in base 2 (0: none)
} p;

// Q tile in rows [0, BR), dO tile in [BR, 2 BR), the current V or K tile in [2 BR, 2 BR + BC).
#define ATTENTION_TILE_ROWS (2 * BR + BC)
#define ATTENTION_SCORE_TILES 1
#include "attention.glsl"

const uint Q_ROWS = 0;
const uint DO_ROWS = BR;
const uint KV_ROWS = 2 * BR;

shared float row_lse2[BR];   // the row's logsumexp in base 2
shared float row_delta[BR];

void main() {
  uint t = thread_id();
  uint row_tiles = gl_NumWorkGroups.x;
  uint tile = row_tiles - 1 - gl_WorkGroupID.x;  // the last rows see the most keys: start them first
  g_batch = gl_WorkGroupID.z;
  g_kv_head = gl_WorkGroupID.y;
  g_group = p.q_heads / p.kv_heads;
  g_rows = g_group * p.seq_q;

  uint first_row = tile * BR;
  uint last_query = min(p.seq_q - 1, (first_row + BR - 1) / g_group);
  uint key_end = min(p.seq_kv, p.q_offset + last_query + 1);

  load_query_rows(Q_ROWS, p.q, first_row);
  load_query_rows(DO_ROWS, p.d_o, first_row);
  load_row_masks(first_row, key_end);
  if (t < BR) {
    uint R = first_row + t;
    bool valid = R < g_rows;
    row_lse2[t] = valid ? FloatBuffer(p.lse).data[row_stat_index(R)] * LOG2E : INF;
    row_delta[t] = valid ? FloatBuffer(p.delta).data[row_stat_index(R)] : 0.0;
  }

  uint lane_d = t % DV;
  uint lane_row = t / DV;
  bool owns_output = lane_row < LINES_PER_PASS;
  vec4 acc[ROW_PASSES];
  for (uint k = 0; k < ROW_PASSES; k++) acc[k] = vec4(0.0);
  float gradients[SR * SC];  // this thread's entries of dP

  for (uint key0 = 0; key0 < key_end; key0 += BC) {
    barrier();  // the previous K tile and dS are consumed
    load_key_rows(KV_ROWS, p.v, key0, key_end);
    load_key_segments(key0, key_end);
    barrier();

    tile_dots(DO_ROWS, KV_ROWS);  // dP = dO vᵀ
    for (uint e = 0; e < SR * SC; e++) gradients[e] = dots[e];
    barrier();

    load_key_rows(KV_ROWS, p.k, key0, key_end);
    barrier();

    tile_dots(Q_ROWS, KV_ROWS);  // Q kᵀ
    for (uint a = 0; a < SR; a++) {
      uint r = score_row(a);
      for (uint b = 0; b < SC; b++) {
        uint c = score_key(b);
        float probability = 0.0;
        // A visible entry's row saw at least that key in the forward, so its lse is finite.
        float score = cap_score(dots[a * SC + b] * p.scale_log2);
        if (visible(r, c, key0) && row_lse2[r] < INF) probability = exp2(score - row_lse2[r]);
        scores[r * P_STRIDE + c] = probability * cap_slope(score) * (gradients[a * SC + b] - row_delta[r]);
      }
    }
    barrier();

    if (owns_output) {  // dQ += dS K (scaled at the end)
      for (uint c = 0; c < BC; c++) {
        vec4 key = tiles[(KV_ROWS + c) * STRIDE + lane_d];
        for (uint k = 0; k < ROW_PASSES; k++) {
          uint r = lane_row + k * LINES_PER_PASS;
          if (r < BR) acc[k] += scores[r * P_STRIDE + c] * key;
        }
      }
    }
  }

  if (owns_output) {
    for (uint k = 0; k < ROW_PASSES; k++) {
      uint r = lane_row + k * LINES_PER_PASS;
      uint R = first_row + r;
      if (r < BR && R < g_rows) act_store4(p.dq, query_vec4(R) + lane_d, acc[k] * p.scale);
    }
  }
}
