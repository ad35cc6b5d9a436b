#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Attention backward, dK and dV: the direct body for CPU drivers (see attention_direct.glsl; the
// GPU body is attention_backward_dkdv.comp, with the same push constants and dispatch). One
// workgroup = one subgroup per (block of BLOCK keys, kv head, sequence). The block's k (pre-scaled
// to base-2 scores), v and the dk/dv accumulators stay in registers, split by dimension, while
// the workgroup walks the query rows of every q head of the group that can see the block, SG
// rows at a time, in a fixed order: dk and dv sum over the group's heads deterministically, with
// no atomics. Per (row, key), with the row in a lane:
//   P = exp2(score - lse2) (recomputed), dP = d_o·v, dS = P (dP - delta),
// then dv += P d_o and dk += dS q (scaled at the end) with P and dS shuffled to the accumulators.
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

#include "attention_direct.glsl"

const uint KEY_GROUPS = (BLOCK + SG - 1) / SG;

vec2 k_slots[BLOCK * SLOTS];   // key c's slot s at [c * SLOTS + s], times scale_log2
vec2 v_slots[BLOCK * SLOTS];
vec2 dk_acc[BLOCK * SLOTS];    // dk / scale
vec2 dv_acc[BLOCK * SLOTS];
vec2 q_slots[SG * SLOTS];      // the current SG rows, row r's slot s at [r * SLOTS + s]
vec2 do_slots[SG * SLOTS];

void main() {
  g_lane = gl_SubgroupInvocationID;
  g_batch = gl_WorkGroupID.z;
  g_kv_head = gl_WorkGroupID.y;
  g_group = p.q_heads / p.kv_heads;
  g_rows = g_group * p.seq_q;
  uint key0 = gl_WorkGroupID.x * BLOCK;
  uint key_end = min(p.seq_kv, key0 + BLOCK);

  uint segments[BLOCK];  // of the block's keys, the same in every lane
  [[unroll]] for (uint b = 0; b < KEY_GROUPS; b++) {
    uint mine = key_segment(min(key0 + b * SG + g_lane, p.seq_kv - 1));
    [[unroll]] for (uint c = 0; c < SG; c++)
      if (b * SG + c < BLOCK) segments[b * SG + c] = subgroupShuffle(mine, c);
  }
  [[unroll]] for (uint c = 0; c < BLOCK; c++) {
    uint base = key_word(min(key0 + c, p.seq_kv - 1));
    LOAD_SLOTS(k_slots, c * SLOTS, p.k, base);
    LOAD_SLOTS(v_slots, c * SLOTS, p.v, base);
    [[unroll]] for (uint s = 0; s < SLOTS; s++) {
      k_slots[c * SLOTS + s] *= p.scale_log2;
      dk_acc[c * SLOTS + s] = vec2(0.0);
      dv_acc[c * SLOTS + s] = vec2(0.0);
    }
  }

  // Query i sees key0 only when q_offset + i >= key0: earlier rows contribute nothing.
  uint first_query = key0 > p.q_offset ? key0 - p.q_offset : 0;
  for (uint row0 = first_query * g_group; row0 < g_rows; row0 += SG) {
    // The lane's row: row0 + lane.
    uint R = row0 + g_lane;
    uint clamped = min(R, g_rows - 1);
    uint i = clamped / g_group;
    uint row_limit = R < g_rows ? min(p.seq_kv, p.q_offset + i + 1) : 0;
    uint row_start = window_start(i);
    uint row_segment = query_segment(i);
    float row_lse2 = FloatBuffer(p.lse).data[row_stat_index(clamped)] * LOG2E;
    float row_delta = FloatBuffer(p.delta).data[row_stat_index(clamped)];
    // Rows past the end are read clamped (finite values) and masked.
    [[unroll]] for (uint r = 0; r < SG; r++) {
      uint base = query_word(min(row0 + r, g_rows - 1));
      LOAD_SLOTS(q_slots, r * SLOTS, p.q, base);
      LOAD_SLOTS(do_slots, r * SLOTS, p.d_o, base);
    }

    [[unroll]] for (uint c = 0; c < BLOCK; c++) {
      [[unroll]] for (uint j = 0; j < SG; j++) {
        vec2 sum = vec2(0.0);
        [[unroll]] for (uint s = 0; s < SLOTS; s++) sum += q_slots[j * SLOTS + s] * k_slots[c * SLOTS + s];
        parts[j] = sum.x + sum.y;
      }
      float score = cap_score(sum_across_lanes());
      [[unroll]] for (uint j = 0; j < SG; j++) {
        vec2 sum = vec2(0.0);
        [[unroll]] for (uint s = 0; s < SLOTS; s++) sum += do_slots[j * SLOTS + s] * v_slots[c * SLOTS + s];
        parts[j] = sum.x + sum.y;
      }
      float gradient = sum_across_lanes();  // dP
      bool visible = key0 + c < row_limit && key0 + c >= row_start && segments[c] == row_segment;
      // A visible entry's row saw at least that key in the forward, so its lse is finite.
      float probability = mix(0.0, exp2(score - row_lse2), visible);
      float score_gradient = probability * cap_slope(score) * (gradient - row_delta);  // dS

      vec2 dk_sum[SLOTS], dv_sum[SLOTS];
      [[unroll]] for (uint s = 0; s < SLOTS; s++) {
        dk_sum[s] = dk_acc[c * SLOTS + s];
        dv_sum[s] = dv_acc[c * SLOTS + s];
      }
      [[unroll]] for (uint r = 0; r < SG; r++) {
        float p_r = subgroupShuffle(probability, r);
        float ds_r = subgroupShuffle(score_gradient, r);
        [[unroll]] for (uint s = 0; s < SLOTS; s++) {
          dv_sum[s] += p_r * do_slots[r * SLOTS + s];
          dk_sum[s] += ds_r * q_slots[r * SLOTS + s];
        }
      }
      [[unroll]] for (uint s = 0; s < SLOTS; s++) {
        dk_acc[c * SLOTS + s] = dk_sum[s];
        dv_acc[c * SLOTS + s] = dv_sum[s];
      }
    }
  }

  [[unroll]] for (uint c = 0; c < BLOCK; c++) {
    uint j = key0 + c;
    if (j < key_end) {
      STORE_SLOTS(dk_acc, c * SLOTS, p.scale, p.dk, key_word(j));
      STORE_SLOTS(dv_acc, c * SLOTS, 1.0, p.dv, key_word(j));
    }
  }
}
