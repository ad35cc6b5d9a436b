#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Attention forward, the direct body for CPU drivers (see attention_direct.glsl; the GPU body is
// attention_forward.comp, with the same push constants, dispatch and outputs). One workgroup =
// one subgroup per (block of BLOCK query rows, kv head, sequence[, key split]). The block's q
// (pre-scaled to base-2 scores) and its output accumulators stay in registers, split by
// dimension; keys stream through KEYS at a time:
//   scores of KEYS keys for every row (row per lane), online softmax per lane (running max and
//   sum, base 2), then o += p v with p shuffled to the dimension-split accumulators.
// Split over keys (decode): as attention_forward.comp, partial o and lse for
// attention_forward_combine.
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
  uint keys_per_split;   // a multiple of KEYS
  uint window;           // sliding window (0: none), see attention_mask.glsl
  float softcap_log2;    // score soft-capping in base 2 (0: none)
} p;

#include "attention_direct.glsl"

vec2 q_slots[BLOCK * SLOTS];    // row r's slot s at [r * SLOTS + s], times scale_log2
vec2 o_acc[BLOCK * SLOTS];      // unnormalized output, same layout
vec2 key_slots[KEYS * SLOTS];     // the current keys (then values), key c's slot s at [c * SLOTS + s]
float scores[ROW_GROUPS * KEYS];  // lane's row a * SG + lane against key key0 + c: [a * KEYS + c]

void main() {
  g_lane = gl_SubgroupInvocationID;
  uint row_tiles = gl_NumWorkGroups.x;
  uint tile = row_tiles - 1 - gl_WorkGroupID.x;  // the last rows see the most keys: start them first
  uint splits = gl_NumWorkGroups.z / p.batch;
  uint split = gl_WorkGroupID.z % splits;
  g_batch = gl_WorkGroupID.z / splits;
  g_kv_head = gl_WorkGroupID.y;
  g_group = p.q_heads / p.kv_heads;
  g_rows = g_group * p.seq_q;

  uint first_row = tile * BLOCK;
  uint last_query = min(p.seq_q - 1, (first_row + BLOCK - 1) / g_group);
  uint key_begin = split * p.keys_per_split;
  // Keys past the split, the sequence, or the causal limit of the block's last query are skipped.
  uint key_end = min(min(p.seq_kv, key_begin + p.keys_per_split), p.q_offset + last_query + 1);

  // The lane's rows a * SG + lane: keys below row_limit are causally visible (0 past the end).
  uint row_limit[ROW_GROUPS];
  uint row_start[ROW_GROUPS];  // ... and keys from row_start on (sliding window; 0 without)
  uint row_segment[ROW_GROUPS];
  float row_max[ROW_GROUPS];  // running max of the row's scores (base 2)
  float row_sum[ROW_GROUPS];  // running sum of exp2(score - row_max)
  [[unroll]] for (uint a = 0; a < ROW_GROUPS; a++) {
    uint R = first_row + a * SG + g_lane;
    uint i = min(R, g_rows - 1) / g_group;
    row_limit[a] = R < g_rows ? min(key_end, p.q_offset + i + 1) : 0;
    row_start[a] = window_start(i);
    row_segment[a] = query_segment(i);
    row_max[a] = -INF;
    row_sum[a] = 0.0;
  }
  [[unroll]] for (uint r = 0; r < BLOCK; r++) {
    LOAD_SLOTS(q_slots, r * SLOTS, p.q, query_word(min(first_row + r, g_rows - 1)));
    [[unroll]] for (uint s = 0; s < SLOTS; s++) {
      q_slots[r * SLOTS + s] *= p.scale_log2;
      o_acc[r * SLOTS + s] = vec2(0.0);
    }
  }

  for (uint key0 = key_begin; key0 < key_end; key0 += KEYS) {
    // Keys past the end are read clamped (finite values) and masked below.
    [[unroll]] for (uint c = 0; c < KEYS; c++) LOAD_SLOTS(key_slots, c * SLOTS, p.k, key_word(min(key0 + c, p.seq_kv - 1)));
    uint my_key_segment = key_segment(min(key0 + g_lane, p.seq_kv - 1));

    // scores[a * KEYS + c] = q(row a * SG + lane) · k(key0 + c), masked to -inf.
    [[unroll]] for (uint c = 0; c < KEYS; c++) {
      uint segment = subgroupShuffle(my_key_segment, c);
      [[unroll]] for (uint a = 0; a < ROW_GROUPS; a++) {
        [[unroll]] for (uint j = 0; j < SG; j++) {
          vec2 sum = vec2(0.0);
          [[unroll]] for (uint s = 0; s < SLOTS; s++) sum += q_slots[(a * SG + j) * SLOTS + s] * key_slots[c * SLOTS + s];
          parts[j] = sum.x + sum.y;
        }
        float score = cap_score(sum_across_lanes());
        bool visible = key0 + c < row_limit[a] && key0 + c >= row_start[a] && segment == row_segment[a];
        scores[a * KEYS + c] = mix(-INF, score, visible);
      }
    }

    // Online softmax of the lane's rows over these keys.
    float rescale[ROW_GROUPS];
    [[unroll]] for (uint a = 0; a < ROW_GROUPS; a++) {
      float block_max = -INF;
      [[unroll]] for (uint c = 0; c < KEYS; c++) block_max = max(block_max, scores[a * KEYS + c]);
      float new_max = max(row_max[a], block_max);
      // A row that has seen nothing yet keeps everything at zero (and avoids -inf - -inf).
      float shift = mix(new_max, 0.0, new_max == -INF);
      float sum = 0.0;
      [[unroll]] for (uint c = 0; c < KEYS; c++) {
        float score = scores[a * KEYS + c];
        // Explicit zero: llvmpipe's exp2 clamps its argument, so exp2(-inf) is tiny, not 0.
        float probability = mix(exp2(score - shift), 0.0, score == -INF);
        scores[a * KEYS + c] = probability;
        sum += probability;
      }
      rescale[a] = mix(exp2(row_max[a] - shift), 0.0, row_max[a] == -INF);
      row_sum[a] = row_sum[a] * rescale[a] + sum;
      row_max[a] = new_max;
    }

    // o += p v: each row's factors reach the dimension-split accumulators by shuffles.
    [[unroll]] for (uint c = 0; c < KEYS; c++) LOAD_SLOTS(key_slots, c * SLOTS, p.v, key_word(min(key0 + c, p.seq_kv - 1)));
    [[unroll]] for (uint r = 0; r < BLOCK; r++) {
      uint a = r / SG, lane = r % SG;
      float factor = subgroupShuffle(rescale[a], lane);
      vec2 acc[SLOTS];
      [[unroll]] for (uint s = 0; s < SLOTS; s++) acc[s] = o_acc[r * SLOTS + s] * factor;
      [[unroll]] for (uint c = 0; c < KEYS; c++) {
        float probability = subgroupShuffle(scores[a * KEYS + c], lane);
        [[unroll]] for (uint s = 0; s < SLOTS; s++) acc[s] += probability * key_slots[c * SLOTS + s];
      }
      [[unroll]] for (uint s = 0; s < SLOTS; s++) o_acc[r * SLOTS + s] = acc[s];
    }
  }

  uint64_t o_address = p.o + uint64_t(split) * p.batch * p.seq_q * p.q_heads * HEAD_DIM * 4;
  uint64_t lse_address = p.lse + uint64_t(split) * p.batch * p.q_heads * p.seq_q * 4;
  [[unroll]] for (uint r = 0; r < BLOCK; r++) {
    uint R = first_row + r;
    uint a = r / SG, lane = r % SG;
    float sum = subgroupShuffle(row_sum[a], lane);
    float inverse = sum > 0.0 ? 1.0 / sum : 0.0;
    if (R < g_rows) STORE_SLOTS(o_acc, r * SLOTS, inverse, o_address, query_word(R));
  }
  [[unroll]] for (uint a = 0; a < ROW_GROUPS; a++) {
    uint R = first_row + a * SG + g_lane;
    if (R < g_rows)
      FloatBuffer(lse_address).data[row_stat_index(R)] = row_sum[a] > 0.0 ? (row_max[a] + log2(row_sum[a])) * LN2 : INF;
  }
}
