#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Attention forward, one workgroup per (tile of BR query rows, kv head, sequence[, key split]):
// the rows' Q tile stays in shared memory while K and V tiles stream through it; an online
// softmax (running max and sum per row, in base 2) rescales the output accumulators, so no score
// matrix larger than BR x BC exists anywhere. Writes o and the row's logsumexp (natural log;
// +inf for a row that sees no key).
// Split over keys (decode): z = sequence * splits + split; each split covers keys_per_split keys
// and writes its normalized partial o and lse; attention_forward_combine merges them.
#include "common.glsl"

layout(push_constant) uniform Push {
  uint64_t q;            // (batch*seq_q, q_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t k;            // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t v;            // (batch*seq_kv, kv_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t o;            // ([splits,] batch*seq_q, q_heads*HEAD_DIM) activation (act_storage.glsl)
  uint64_t lse;          // ([splits,] batch, q_heads, seq_q) fp32
  uint64_t q_segments;   // (batch*seq_q) uint32, or 0: no segment masking
  uint64_t kv_segments;  // (batch*seq_kv) uint32
  uint batch;
  uint seq_q;
  uint seq_kv;
  uint q_heads;
  uint kv_heads;
  uint q_offset;
  float scale_log2;      // softmax scale * log2(e): scores in base 2
  uint keys_per_split;   // a multiple of BC
  uint window;           // sliding window (0: none), see attention_mask.glsl
  float softcap_log2;    // score soft-capping in base 2 (0: none)
} p;

// Q tile in rows [0, BR), the current K or V tile in rows [BR, BR + BC).
#define ATTENTION_TILE_ROWS (BR + BC)
#define ATTENTION_SCORE_TILES 1
#include "attention.glsl"

shared float row_max[BR];      // running max of the row's scores (base 2)
shared float row_sum[BR];      // running sum of exp2(score - row_max)
shared float row_rescale[BR];  // factor the accumulators take for the current key tile

void main() {
  uint t = thread_id();
  uint row_tiles = gl_NumWorkGroups.x;
  uint tile = row_tiles - 1 - gl_WorkGroupID.x;  // the last rows see the most keys: start them first
  uint splits = gl_NumWorkGroups.z / p.batch;
  uint split = gl_WorkGroupID.z % splits;
  g_batch = gl_WorkGroupID.z / splits;
  g_kv_head = gl_WorkGroupID.y;
  g_group = p.q_heads / p.kv_heads;
  g_rows = g_group * p.seq_q;

  uint first_row = tile * BR;
  uint last_query = min(p.seq_q - 1, (first_row + BR - 1) / g_group);
  uint key_begin = split * p.keys_per_split;
  // Keys past the split, the sequence, or the causal limit of the tile's last query are skipped.
  uint key_end = min(min(p.seq_kv, key_begin + p.keys_per_split), p.q_offset + last_query + 1);

  load_row_masks(first_row, key_end);
  if (t < BR) {
    row_max[t] = -INF;
    row_sum[t] = 0.0;
  }
  load_query_rows(0, p.q, first_row);

  uint lane_d = t % DV;
  uint lane_row = t / DV;
  bool owns_output = lane_row < LINES_PER_PASS;
  vec4 acc[ROW_PASSES];
  for (uint k = 0; k < ROW_PASSES; k++) acc[k] = vec4(0.0);

  barrier();
  for (uint key0 = key_begin; key0 < key_end; key0 += BC) {
    barrier();  // the previous V tile and probabilities are consumed
    load_key_rows(BR, p.k, key0, key_end);
    load_key_segments(key0, key_end);
    barrier();

    tile_dots(0, BR);
    for (uint a = 0; a < SR; a++) {
      uint r = score_row(a);
      for (uint b = 0; b < SC; b++) {
        uint c = score_key(b);
        scores[r * P_STRIDE + c] = visible(r, c, key0) ? cap_score(dots[a * SC + b] * p.scale_log2) : -INF;
      }
    }
    barrier();

    load_key_rows(BR, p.v, key0, key_end);
    if (t < BR) {  // online softmax of row t over this key tile
      float previous_max = row_max[t];
      float tile_max = -INF;
      for (uint c = 0; c < BC; c++) tile_max = max(tile_max, scores[t * P_STRIDE + c]);
      float new_max = max(previous_max, tile_max);
      float sum = 0.0;
      if (new_max == -INF) {  // nothing seen yet: keep everything at zero (and avoid -inf - -inf)
        for (uint c = 0; c < BC; c++) scores[t * P_STRIDE + c] = 0.0;
        row_rescale[t] = 1.0;
      } else {
        for (uint c = 0; c < BC; c++) {
          float s = scores[t * P_STRIDE + c];
          float probability = s == -INF ? 0.0 : exp2(s - new_max);
          scores[t * P_STRIDE + c] = probability;
          sum += probability;
        }
        float rescale = exp2(previous_max - new_max);  // 0 when previous_max is -inf
        row_rescale[t] = rescale;
        row_sum[t] = row_sum[t] * rescale + sum;
        row_max[t] = new_max;
      }
    }
    barrier();

    if (owns_output) {
      for (uint k = 0; k < ROW_PASSES; k++) {
        uint r = lane_row + k * LINES_PER_PASS;
        if (r < BR) acc[k] *= row_rescale[r];
      }
      for (uint c = 0; c < BC; c++) {
        vec4 value = tiles[(BR + c) * STRIDE + lane_d];
        for (uint k = 0; k < ROW_PASSES; k++) {
          uint r = lane_row + k * LINES_PER_PASS;
          if (r < BR) acc[k] += scores[r * P_STRIDE + c] * value;
        }
      }
    }
  }
  barrier();

  uint64_t o_address = p.o + uint64_t(split) * p.batch * p.seq_q * p.q_heads * HEAD_DIM * 4;
  uint64_t lse_address = p.lse + uint64_t(split) * p.batch * p.q_heads * p.seq_q * 4;
  if (owns_output) {
    for (uint k = 0; k < ROW_PASSES; k++) {
      uint r = lane_row + k * LINES_PER_PASS;
      uint R = first_row + r;
      if (r < BR && R < g_rows) {
        float sum = row_sum[r];
        act_store4(o_address, query_vec4(R) + lane_d, sum > 0.0 ? acc[k] / sum : vec4(0.0));
      }
    }
  }
  if (t < BR && first_row + t < g_rows) {
    float sum = row_sum[t];
    FloatBuffer(lse_address).data[row_stat_index(first_row + t)] = sum > 0.0 ? (row_max[t] + log2(sum)) * LN2 : INF;
  }
}
