#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Attention backward, dQ: the direct body for CPU drivers (see attention_direct.glsl; the GPU
// body is attention_backward_dq.comp, with the same push constants and dispatch). One workgroup =
// one subgroup per (block of BLOCK query rows, kv head, sequence). The block's q (pre-scaled to
// base-2 scores), d_o and dq accumulators stay in registers, split by dimension; keys stream
// through KEYS at a time:
//   score and dP = d_o·v per (row, key) with the row in a lane, P = exp2(score - lse2),
//   dS = P (dP - delta), then dq += dS k with dS shuffled to the accumulators (scaled at the end).
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

#include "attention_direct.glsl"

vec2 q_slots[BLOCK * SLOTS];    // row r's slot s at [r * SLOTS + s], times scale_log2
vec2 do_slots[BLOCK * SLOTS];   // d_o, same layout
vec2 dq_acc[BLOCK * SLOTS];     // dq / scale, same layout
vec2 key_slots[KEYS * SLOTS];    // the current keys, key c's slot s at [c * SLOTS + s]
vec2 value_slots[KEYS * SLOTS];  // their values
float ds[ROW_GROUPS * KEYS];     // lane's row a * SG + lane against key key0 + c: [a * KEYS + c]

void main() {
  g_lane = gl_SubgroupInvocationID;
  uint row_tiles = gl_NumWorkGroups.x;
  uint tile = row_tiles - 1 - gl_WorkGroupID.x;  // the last rows see the most keys: start them first
  g_batch = gl_WorkGroupID.z;
  g_kv_head = gl_WorkGroupID.y;
  g_group = p.q_heads / p.kv_heads;
  g_rows = g_group * p.seq_q;

  uint first_row = tile * BLOCK;
  uint last_query = min(p.seq_q - 1, (first_row + BLOCK - 1) / g_group);
  uint key_end = min(p.seq_kv, p.q_offset + last_query + 1);

  // The lane's rows a * SG + lane.
  uint row_limit[ROW_GROUPS];  // keys below it are causally visible (0 past the end)
  uint row_start[ROW_GROUPS];  // ... and keys from it on (sliding window; 0 without)
  uint row_segment[ROW_GROUPS];
  float row_lse2[ROW_GROUPS];  // the row's logsumexp in base 2
  float row_delta[ROW_GROUPS];
  [[unroll]] for (uint a = 0; a < ROW_GROUPS; a++) {
    uint R = first_row + a * SG + g_lane;
    uint clamped = min(R, g_rows - 1);
    uint i = clamped / g_group;
    row_limit[a] = R < g_rows ? min(key_end, p.q_offset + i + 1) : 0;
    row_start[a] = window_start(i);
    row_segment[a] = query_segment(i);
    row_lse2[a] = FloatBuffer(p.lse).data[row_stat_index(clamped)] * LOG2E;
    row_delta[a] = FloatBuffer(p.delta).data[row_stat_index(clamped)];
  }
  [[unroll]] for (uint r = 0; r < BLOCK; r++) {
    uint base = query_word(min(first_row + r, g_rows - 1));
    LOAD_SLOTS(q_slots, r * SLOTS, p.q, base);
    LOAD_SLOTS(do_slots, r * SLOTS, p.d_o, base);
    [[unroll]] for (uint s = 0; s < SLOTS; s++) {
      q_slots[r * SLOTS + s] *= p.scale_log2;
      dq_acc[r * SLOTS + s] = vec2(0.0);
    }
  }

  for (uint key0 = 0; key0 < key_end; key0 += KEYS) {
    // Keys past the end are read clamped (finite values) and masked below.
    [[unroll]] for (uint c = 0; c < KEYS; c++) {
      uint base = key_word(min(key0 + c, p.seq_kv - 1));
      LOAD_SLOTS(key_slots, c * SLOTS, p.k, base);
      LOAD_SLOTS(value_slots, c * SLOTS, p.v, base);
    }
    uint my_key_segment = key_segment(min(key0 + g_lane, p.seq_kv - 1));

    [[unroll]] for (uint c = 0; c < KEYS; c++) {
      uint segment = subgroupShuffle(my_key_segment, c);
      [[unroll]] for (uint a = 0; a < ROW_GROUPS; a++) {
        [[unroll]] for (uint j = 0; j < SG; j++) {
          vec2 sum = vec2(0.0);
          [[unroll]] for (uint s = 0; s < SLOTS; s++) sum += q_slots[(a * SG + j) * SLOTS + s] * key_slots[c * SLOTS + s];
          parts[j] = sum.x + sum.y;
        }
        float score = cap_score(sum_across_lanes());
        [[unroll]] for (uint j = 0; j < SG; j++) {
          vec2 sum = vec2(0.0);
          [[unroll]] for (uint s = 0; s < SLOTS; s++) sum += do_slots[(a * SG + j) * SLOTS + s] * value_slots[c * SLOTS + s];
          parts[j] = sum.x + sum.y;
        }
        float gradient = sum_across_lanes();  // dP
        bool visible = key0 + c < row_limit[a] && key0 + c >= row_start[a] && segment == row_segment[a];
        // A visible entry's row saw at least that key in the forward, so its lse is finite.
        float probability = mix(0.0, exp2(score - row_lse2[a]), visible);
        ds[a * KEYS + c] = probability * cap_slope(score) * (gradient - row_delta[a]);
      }
    }

    // dq += dS k: each row's dS reaches the dimension-split accumulators by shuffles.
    [[unroll]] for (uint r = 0; r < BLOCK; r++) {
      uint a = r / SG, lane = r % SG;
      vec2 acc[SLOTS];
      [[unroll]] for (uint s = 0; s < SLOTS; s++) acc[s] = dq_acc[r * SLOTS + s];
      [[unroll]] for (uint c = 0; c < KEYS; c++) {
        float factor = subgroupShuffle(ds[a * KEYS + c], lane);
        [[unroll]] for (uint s = 0; s < SLOTS; s++) acc[s] += factor * key_slots[c * SLOTS + s];
      }
      [[unroll]] for (uint s = 0; s < SLOTS; s++) dq_acc[r * SLOTS + s] = acc[s];
    }
  }

  [[unroll]] for (uint r = 0; r < BLOCK; r++) {
    uint R = first_row + r;
    if (R < g_rows) STORE_SLOTS(dq_acc, r * SLOTS, p.scale, p.dq, query_word(R));
  }
}
