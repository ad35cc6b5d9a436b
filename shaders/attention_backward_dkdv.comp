#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Attention backward, dK and dV: one workgroup per (tile of BC keys, kv head, sequence). K and V
// stay in shared memory while the workgroup walks the query rows of every q head of the group
// (those that can see the tile) in a fixed order; so dK and dV sum over the group's heads in
// registers, deterministically, with no atomics. Per row tile:
//   P = exp(scale q·kᵀ - lse) (recomputed),  dV += Pᵀ dO,  dP = dO vᵀ,  dS = P ∘ (dP - delta),
//   dK += scale dSᵀ Q.
// Q and dO share one shared-memory tile (so head_dim 256 fits in 32 KiB): Q, then dO, then Q again.
#include "common.glsl"

layout(push_constant) uniform Push {
  uint64_t q;            // (batch*seq_q, q_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t k;            // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t v;            // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t d_o;          // (batch*seq_q, q_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t lse;          // (batch, q_heads, seq_q) fp32 from the forward
  uint64_t delta;        // (batch, q_heads, seq_q) fp32 from attention_backward_delta
  uint64_t dk;           // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl), written
  uint64_t dv;           // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl), written
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

// K tile in rows [0, BC), V tile in [BC, 2 BC), the Q or dO tile in [2 BC, 2 BC + BR).
#define ATTENTION_TILE_ROWS (2 * BC + BR)
// P in the first score tile, dS in the second.
#define ATTENTION_SCORE_TILES 2
#include "attention.glsl"

const uint K_ROWS = 0;
const uint V_ROWS = BC;
const uint X_ROWS = 2 * BC;
const uint DS_BASE = BR * P_STRIDE;

shared float row_lse2[BR];   // the row's logsumexp in base 2
shared float row_delta[BR];

void main() {
  uint t = thread_id();
  g_batch = gl_WorkGroupID.z;
  g_kv_head = gl_WorkGroupID.y;
  g_group = p.q_heads / p.kv_heads;
  g_rows = g_group * p.seq_q;
  uint key0 = gl_WorkGroupID.x * BC;
  uint key_end = min(p.seq_kv, key0 + BC);

  load_key_rows(K_ROWS, p.k, key0, key_end);
  load_key_rows(V_ROWS, p.v, key0, key_end);
  load_key_segments(key0, key_end);

  uint lane_d = t % DV;
  uint lane_key = t / DV;
  bool owns_output = lane_key < LINES_PER_PASS;
  vec4 dk_acc[KEY_PASSES];
  vec4 dv_acc[KEY_PASSES];
  for (uint k = 0; k < KEY_PASSES; k++) {
    dk_acc[k] = vec4(0.0);
    dv_acc[k] = vec4(0.0);
  }
  float probabilities[SR * SC];

  // Query i sees key0 only when q_offset + i >= key0: earlier rows contribute nothing.
  uint first_query = key0 > p.q_offset ? key0 - p.q_offset : 0;
  for (uint row0 = first_query * g_group; row0 < g_rows; row0 += BR) {
    barrier();  // the previous row tile is consumed
    load_query_rows(X_ROWS, p.q, row0);
    load_row_masks(row0, p.seq_kv);
    if (t < BR) {
      uint R = row0 + t;
      bool valid = R < g_rows;
      row_lse2[t] = valid ? FloatBuffer(p.lse).data[row_stat_index(R)] * LOG2E : INF;
      row_delta[t] = valid ? FloatBuffer(p.delta).data[row_stat_index(R)] : 0.0;
    }
    barrier();

    tile_dots(X_ROWS, K_ROWS);  // Q kᵀ
    for (uint a = 0; a < SR; a++) {
      uint r = score_row(a);
      for (uint b = 0; b < SC; b++) {
        uint c = score_key(b);
        float probability = 0.0;
        // A visible entry's row saw at least that key in the forward, so its lse is finite.
        float score = cap_score(dots[a * SC + b] * p.scale_log2);
        if (visible(r, c, key0) && row_lse2[r] < INF) probability = exp2(score - row_lse2[r]);
        probabilities[a * SC + b] = probability * cap_slope(score);  // for dS, through the capping
        scores[r * P_STRIDE + c] = probability;
      }
    }
    barrier();

    load_query_rows(X_ROWS, p.d_o, row0);
    barrier();

    if (owns_output) {  // dV += Pᵀ dO
      for (uint r = 0; r < BR; r++) {
        vec4 gradient = tiles[(X_ROWS + r) * STRIDE + lane_d];
        for (uint k = 0; k < KEY_PASSES; k++) {
          uint c = lane_key + k * LINES_PER_PASS;
          if (c < BC) dv_acc[k] += scores[r * P_STRIDE + c] * gradient;
        }
      }
    }
    tile_dots(X_ROWS, V_ROWS);  // dP = dO vᵀ
    for (uint a = 0; a < SR; a++) {
      uint r = score_row(a);
      for (uint b = 0; b < SC; b++) {
        uint c = score_key(b);
        scores[DS_BASE + r * P_STRIDE + c] = probabilities[a * SC + b] * (dots[a * SC + b] - row_delta[r]);
      }
    }
    barrier();

    load_query_rows(X_ROWS, p.q, row0);
    barrier();

    if (owns_output) {  // dK += dSᵀ Q (scaled at the end)
      for (uint r = 0; r < BR; r++) {
        vec4 query = tiles[(X_ROWS + r) * STRIDE + lane_d];
        for (uint k = 0; k < KEY_PASSES; k++) {
          uint c = lane_key + k * LINES_PER_PASS;
          if (c < BC) dk_acc[k] += scores[DS_BASE + r * P_STRIDE + c] * query;
        }
      }
    }
  }

  if (owns_output) {
    for (uint k = 0; k < KEY_PASSES; k++) {
      uint c = lane_key + k * LINES_PER_PASS;
      uint j = key0 + c;
      if (c < BC && j < key_end) {
        act_store4(p.dk, key_vec4(j) + lane_d, dk_acc[k] * p.scale);
        act_store4(p.dv, key_vec4(j) + lane_d, dv_acc[k]);
      }
    }
  }
}
