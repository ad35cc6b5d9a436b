// Shared by the attention shaders (forward, backward dK/dV, backward dQ): tile sizes, tile loads,
// masks and the score micro-tile. See engine/kernels/attention.hpp for layouts and masks.
//
// Rows. A workgroup serves one kv head of one sequence and handles the query rows of ALL the q
// heads that share it, query-major: row R = i * group + g is query i of q head
// kv_head * group + g. Each K/V tile loaded into shared memory then serves the whole group
// (grouped-query attention reads K/V once per group, not once per q head), and a decode step
// (seq_q = 1) still fills `group` rows of a tile.
//
// Before including this file a shader declares its push block `p` with at least
//   uint64_t q_segments, kv_segments; uint seq_q, seq_kv, q_heads, kv_heads, q_offset, window;
//   float softcap_log2; (attention_mask.glsl)
// and defines ATTENTION_TILE_ROWS (rows of head vectors in `tiles`) and ATTENTION_SCORE_TILES
// (BR x BC float tiles in `scores`).

#include "attention_mask.glsl"
#include "act_storage.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;       // threads per workgroup
layout(constant_id = 1) const uint HEAD_DIM = 64;  // a multiple of 4
layout(constant_id = 2) const uint BR = 32;        // query rows per tile
layout(constant_id = 3) const uint BC = 32;        // keys per tile
layout(constant_id = 4) const uint S_TX = 16;      // threads along keys in the score micro-tile

const uint DV = HEAD_DIM / 4;  // vec4 per head vector
// Tile rows are padded by one vec4: threads reading the same column of consecutive rows then hit
// different shared-memory banks.
const uint STRIDE = DV + 1;
const uint P_STRIDE = BC + 1;  // score tiles are padded likewise
// Score micro-tile: thread t computes rows ty + a*S_TY (a < SR) x keys tx + b*S_TX (b < SC),
// with tx = t % S_TX, ty = t / S_TX.
const uint S_TY = WG / S_TX;
const uint SR = BR / S_TY;
const uint SC = BC / S_TX;
// Output accumulators (O, dQ over rows; dK, dV over keys): thread t owns vec4 column t % DV of
// rows (or keys) t / DV + k * LINES_PER_PASS; threads with t / DV >= LINES_PER_PASS own nothing.
const uint LINES_PER_PASS = WG / DV;
const uint ROW_PASSES = (BR + LINES_PER_PASS - 1) / LINES_PER_PASS;
const uint KEY_PASSES = (BC + LINES_PER_PASS - 1) / LINES_PER_PASS;

const float INF = 1.0 / 0.0;
const float LOG2E = 1.4426950408889634;
const float LN2 = 0.6931471805599453;

shared vec4 tiles[ATTENTION_TILE_ROWS * STRIDE];
shared float scores[ATTENTION_SCORE_TILES * BR * P_STRIDE];
shared uint row_limit[BR];    // row r sees keys j < row_limit[r]; 0 for rows past the end
shared uint row_start[BR];    // ... and j >= row_start[r] (sliding window; 0 without)
shared uint row_segment[BR];  // segment id of row r's query (0 without segments)
shared uint key_segment[BC];  // segment id of key c of the current key tile

// Set by main from the workgroup id.
uint g_batch;    // sequence
uint g_kv_head;
uint g_group;    // q heads per kv head
uint g_rows;     // group * seq_q: rows of this (sequence, kv head)

uint thread_id() { return gl_LocalInvocationID.x; }

// vec4 offset of row R's head vector in a (batch*seq_q, q_heads*HEAD_DIM) tensor.
uint query_vec4(uint R) {
  uint i = R / g_group;
  uint g = R - i * g_group;
  return ((g_batch * p.seq_q + i) * p.q_heads + g_kv_head * g_group + g) * DV;
}

// Index of row R in a (batch, q_heads, seq_q) tensor (lse, delta).
uint row_stat_index(uint R) {
  uint i = R / g_group;
  uint g = R - i * g_group;
  return (g_batch * p.q_heads + g_kv_head * g_group + g) * p.seq_q + i;
}

// vec4 offset of key j's head vector in a (batch*seq_kv, kv_heads*HEAD_DIM) tensor.
uint key_vec4(uint j) { return ((g_batch * p.seq_kv + j) * p.kv_heads + g_kv_head) * DV; }

// tiles rows [tile_row, tile_row + BR) = rows first_row.. of a q-shaped tensor (zeros past the end).
void load_query_rows(uint tile_row, uint64_t address, uint first_row) {
  for (uint e = thread_id(); e < BR * DV; e += WG) {
    uint r = e / DV;
    uint d = e - r * DV;
    uint R = first_row + r;
    tiles[(tile_row + r) * STRIDE + d] = R < g_rows ? act_load4(address, query_vec4(R) + d) : vec4(0.0);
  }
}

// tiles rows [tile_row, tile_row + BC) = keys first_key.. of a k-shaped tensor (zeros from key_end).
void load_key_rows(uint tile_row, uint64_t address, uint first_key, uint key_end) {
  for (uint e = thread_id(); e < BC * DV; e += WG) {
    uint c = e / DV;
    uint d = e - c * DV;
    uint j = first_key + c;
    tiles[(tile_row + c) * STRIDE + d] = j < key_end ? act_load4(address, key_vec4(j) + d) : vec4(0.0);
  }
}

// row_limit and row_segment of rows first_row..; keys at or past key_cap are never seen.
void load_row_masks(uint first_row, uint key_cap) {
  uint r = thread_id();
  if (r >= BR) return;
  uint R = first_row + r;
  uint i = R / g_group;
  row_limit[r] = R < g_rows ? min(key_cap, p.q_offset + i + 1) : 0;
  row_start[r] = window_start(i);
  row_segment[r] = (p.q_segments != 0 && R < g_rows) ? UintBuffer(p.q_segments).data[g_batch * p.seq_q + i] : 0;
}

void load_key_segments(uint first_key, uint key_end) {
  uint c = thread_id();
  if (c >= BC) return;
  uint j = first_key + c;
  key_segment[c] = (p.q_segments != 0 && j < key_end) ? UintBuffer(p.kv_segments).data[g_batch * p.seq_kv + j] : 0;
}

// Whether tile row r sees key first_key + c (the key tile starting at first_key is loaded).
bool visible(uint r, uint c, uint first_key) {
  return first_key + c < row_limit[r] && first_key + c >= row_start[r] && row_segment[r] == key_segment[c];
}

uint score_row(uint a) { return thread_id() / S_TX + a * S_TY; }
uint score_key(uint b) { return thread_id() % S_TX + b * S_TX; }

// dots[a * SC + b] = tiles[row_base + score_row(a)] · tiles[key_base + score_key(b)]
float dots[SR * SC];
void tile_dots(uint row_base, uint key_base) {
  uint tx = thread_id() % S_TX;
  uint ty = thread_id() / S_TX;
  for (uint e = 0; e < SR * SC; e++) dots[e] = 0.0;
  for (uint d = 0; d < DV; d++) {
    vec4 a_values[SR];
    vec4 b_values[SC];
    for (uint a = 0; a < SR; a++) a_values[a] = tiles[(row_base + ty + a * S_TY) * STRIDE + d];
    for (uint b = 0; b < SC; b++) b_values[b] = tiles[(key_base + tx + b * S_TX) * STRIDE + d];
    for (uint a = 0; a < SR; a++)
      for (uint b = 0; b < SC; b++) dots[a * SC + b] += dot(a_values[a], b_values[b]);
  }
}
