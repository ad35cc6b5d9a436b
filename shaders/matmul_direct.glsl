// The direct body of shaders/matmul.comp, for CPU drivers (lavapipe).
//
// Why a second body: llvmpipe runs a subgroup as one SIMD vector but turns every memory access
// into one scalar access per lane and per component, from shared memory as from global memory
// and even at a uniform address, while arithmetic stays SIMD. Staging tiles through shared
// memory then only adds accesses, and the inner loop of the tiled body spends most of its time
// in shared-memory reads. Here each subgroup computes THREAD_ROWS x (SUBGROUP_SIZE * THREAD_COLS)
// outputs straight from global memory (the CPU caches do the tiling):
// - each lane owns THREAD_COLS columns and loads their R values itself;
// - the L values of the subgroup's THREAD_ROWS rows are loaded once, spread over the lanes,
//   and handed to every lane by subgroupShuffle (about a third of the cost of a load);
// - P advances four steps at a time, with 4-element groups read as 64-bit words when aligned.
// Measured on lavapipe (2 cores, 1024^3 fp32 matmul_nt): tiled body ~8 GFLOP/s, this ~45.
// Requires subgroups of exactly SUBGROUP_SIZE lanes (devices with a fixed subgroup size) and
// WORKGROUP_SIZE == SUBGROUP_SIZE * (TILE_ROWS / THREAD_ROWS) * (TILE_COLS / (SUBGROUP_SIZE * THREAD_COLS))
// (the host launches one subgroup per workgroup).

const uint SG = SUBGROUP_SIZE;
const uint ROWS = THREAD_ROWS;  // rows per subgroup: a multiple of SG (and of 4)
const uint COLS = THREAD_COLS;  // columns per lane: a multiple of 4
const uint SUBGROUPS_PER_ROW = TILE_COLS / (SG * COLS);
// L values a lane holds per step of 4 over P: p contiguous: ROWS/SG rows, one vec4 (4 steps)
// each; i contiguous: quads of 4 adjacent rows, one vec4 per step, ceil(ROWS/4/SG) quads.
const uint L_QUADS = (ROWS / 4 + SG - 1) / SG;
const uint L_SLOTS = L_P_CONTIGUOUS ? ROWS / SG : 4 * L_QUADS;

vec4 l_mine[L_SLOTS];  // see above
// R values of the lane's columns for 4 steps over P: p contiguous: r_mine[t] = steps 0..3 of
// column t; j contiguous: r_mine[q * COLS/4 + u] = columns 4u..4u+3 at step q.
vec4 r_mine[COLS];
uint l_offset[L_SLOTS];  // element offset of each slot's row (p contiguous) or quad (i contiguous)
uint r_offset[COLS];     // element offset of each column (p contiguous) or group of 4 (j contiguous)

// The lane's t-th column and the subgroup's r-th row, relative to the subgroup's tile.
uint lane_col(uint t, uint lane) { return R_P_CONTIGUOUS ? t * SG + lane : ((t / 4) * SG + lane) * 4 + t % 4; }
uint lane_quad(uint slot, uint lane) { return (slot * SG + lane) * 4; }  // first row of an L quad

// Element offsets of everything this lane loads, clamped into the matrix: lanes past the edge
// load valid (unused) data instead of branching in the inner loop. `cols`, `ld_r`: the product's R
// (C's, or C2's with SECOND_PRODUCT).
void prepare_offsets(uint row0, uint col0, uint lane, uint cols, uint ld_r, bool r_vec4) {
  if (L_P_CONTIGUOUS) {
    [[unroll]] for (uint s = 0; s < L_SLOTS; s++) l_offset[s] = min(row0 + s * SG + lane, p.rows - 1) * p.ld_l;
  } else {
    // Whole quads stay inside when L_VEC4 (rows % 4 == 0); scalar loads clamp each row.
    [[unroll]] for (uint s = 0; s < L_QUADS; s++)
      l_offset[s] = L_VEC4 ? min(row0 + lane_quad(s, lane), p.rows - 4) : row0 + lane_quad(s, lane);
  }
  if (R_P_CONTIGUOUS) {
    [[unroll]] for (uint t = 0; t < COLS; t++) r_offset[t] = min(col0 + lane_col(t, lane), cols - 1) * ld_r;
  } else {
    [[unroll]] for (uint u = 0; u < COLS / 4; u++)
      r_offset[u] = r_vec4 ? min(col0 + lane_col(4 * u, lane), cols - 4) : col0 + lane_col(4 * u, lane);
  }
}

// Loads steps k..k+3 over P; steps past the end read as zeros. 4-element loads along P are
// only used when P % 4 == 0 (the host checks), so they never run past the end. `second`: R2's
// loads instead of R's (a constant at each call site); cols, ld_r: that operand's.
void load_chunk(uint64_t l_base, uint64_t r_base, uint k, bool second, uint cols, uint ld_r) {
  bool r_vec4 = second ? R2_VEC4 : R_VEC4;
  uint last = p.inner - 1;
  if (L_P_CONTIGUOUS) {
    [[unroll]] for (uint s = 0; s < L_SLOTS; s++) {
      if (L_VEC4) {
        l_mine[s] = load_left4(l_base, l_offset[s] + k);
      } else {
        [[unroll]] for (uint q = 0; q < 4; q++) {
          float value = load_left(l_base, l_offset[s] + min(k + q, last));
          l_mine[s][q] = k + q <= last ? value : 0.0;
        }
      }
    }
  } else {
    [[unroll]] for (uint s = 0; s < L_QUADS; s++)
      [[unroll]] for (uint q = 0; q < 4; q++) {
        uint step = min(k + q, last);
        vec4 values;
        if (L_VEC4) {
          values = load_left4(l_base, step * p.ld_l + l_offset[s]);
        } else {
          [[unroll]] for (uint e = 0; e < 4; e++)
            values[e] = load_left(l_base, step * p.ld_l + min(l_offset[s] + e, p.rows - 1));
        }
        l_mine[s * 4 + q] = k + q <= last ? values : vec4(0);
      }
  }
  if (R_P_CONTIGUOUS) {
    [[unroll]] for (uint t = 0; t < COLS; t++) {
      if (r_vec4) {
        r_mine[t] = load_r4(second, r_base, r_offset[t] + k);
      } else {
        [[unroll]] for (uint q = 0; q < 4; q++) {
          float value = load_r(second, r_base, r_offset[t] + min(k + q, last));
          r_mine[t][q] = k + q <= last ? value : 0.0;
        }
      }
    }
  } else {
    [[unroll]] for (uint q = 0; q < 4; q++)
      [[unroll]] for (uint u = 0; u < COLS / 4; u++) {
        uint step = min(k + q, last);
        vec4 values;
        if (r_vec4) {
          values = load_r4(second, r_base, step * ld_r + r_offset[u]);
        } else {
          [[unroll]] for (uint e = 0; e < 4; e++)
            values[e] = load_r(second, r_base, step * ld_r + min(r_offset[u] + e, cols - 1));
        }
        r_mine[q * (COLS / 4) + u] = k + q <= last ? values : vec4(0);
      }
  }
}

// Row r of the subgroup at step q, fetched from the lane that loaded it.
float l_value(uint r, uint q) {
  if (L_P_CONTIGUOUS) return subgroupShuffle(l_mine[r / SG][q], r % SG);
  uint quad = r / 4;
  return subgroupShuffle(l_mine[(quad / SG) * 4 + q][r % 4], quad % SG);
}

// The lane's columns 4u .. 4u+3 at step q.
vec4 r_values(uint u, uint q) {
  if (R_P_CONTIGUOUS) return vec4(r_mine[4 * u][q], r_mine[4 * u + 1][q], r_mine[4 * u + 2][q], r_mine[4 * u + 3][q]);
  return r_mine[q * (COLS / 4) + u];
}

vec4 acc[ROWS][COLS / 4];  // acc[r][u][e]: row r, the lane's column 4u+e

void accumulate_chunk() {
  [[unroll]] for (uint q = 0; q < 4; q++)
    [[unroll]] for (uint r = 0; r < ROWS; r++) {
      float a = l_value(r, q);
      [[unroll]] for (uint u = 0; u < COLS / 4; u++) acc[r][u] += a * r_values(u, q);
    }
}

// One subgroup tile of C (or of C2 when `second`, a constant at each call site): sweep P, store.
void run_tile(bool second, uint row0, uint col0, uint lane, uint64_t l_base) {
  uint cols = product_cols(second), ld_r = product_ld_r(second);
  uint64_t r_base = product_r_base(second);
  prepare_offsets(row0, col0, lane, cols, ld_r, second ? R2_VEC4 : R_VEC4);
  [[unroll]] for (uint r = 0; r < ROWS; r++)
    [[unroll]] for (uint u = 0; u < COLS / 4; u++) acc[r][u] = vec4(0);

  // Software pipelining: the next chunk's loads are issued before this chunk's FMAs, so cache
  // misses overlap with arithmetic (about +8% on lavapipe). The last iteration reloads the
  // final chunk, harmlessly.
  if (p.inner > 0) load_chunk(l_base, r_base, 0, second, cols, ld_r);  // an empty product reads nothing
  for (uint k = 0; k < p.inner; k += 4) {
    vec4 l_now[L_SLOTS], r_now[COLS];
    [[unroll]] for (uint s = 0; s < L_SLOTS; s++) l_now[s] = l_mine[s];
    [[unroll]] for (uint t = 0; t < COLS; t++) r_now[t] = r_mine[t];
    load_chunk(l_base, r_base, min(k + 4, (p.inner - 1) & ~3u), second, cols, ld_r);
    vec4 l_next[L_SLOTS], r_next[COLS];
    [[unroll]] for (uint s = 0; s < L_SLOTS; s++) { l_next[s] = l_mine[s]; l_mine[s] = l_now[s]; }
    [[unroll]] for (uint t = 0; t < COLS; t++) { r_next[t] = r_mine[t]; r_mine[t] = r_now[t]; }
    accumulate_chunk();
    [[unroll]] for (uint s = 0; s < L_SLOTS; s++) l_mine[s] = l_next[s];
    [[unroll]] for (uint t = 0; t < COLS; t++) r_mine[t] = r_next[t];
  }

  uint64_t c_base = batch_base(p.c, p.stride_c, C_TYPE);
  [[unroll]] for (uint r = 0; r < ROWS; r++) {
    uint i = row0 + r;
    if (i >= p.rows) continue;
    [[unroll]] for (uint t = 0; t < COLS; t++) {
      uint j = col0 + lane_col(t, lane);
      if (j >= cols) continue;
      if (second) store_output2(i, j, acc[r][t / 4][t % 4]);
      else store_output(c_base, i, j, acc[r][t / 4][t % 4]);
    }
  }
}

void main() {
  // Tile order: the workgroups form one line (x, then y); groups of p.group_rows row tiles
  // sweep all column tiles, so the group's L rows and the current R columns stay in the CPU's L2
  // (lavapipe, tn 1024^3: 12 -> 16 GFLOP/s; strided operands get no hardware prefetch). C2's tiles
  // (SECOND_PRODUCT) come after all of C's, in the same order: inside C's sweep, a LoRA B of a long
  // inner dimension (dy·B, 4864 x 16 fp32) pushed C's strips out of L2 (qwen up dX, NF4: 272-371 ->
  // 380 cpu ms; bench/fusions.md).
  uint tiles_down = (p.rows + TILE_ROWS - 1) / TILE_ROWS, tiles_across_c = (p.cols + TILE_COLS - 1) / TILE_COLS;
  uint tile = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  bool second = SECOND_PRODUCT && tile >= tiles_down * tiles_across_c;
  uint tiles_across = tiles_across_c;
  if (second) {
    tile -= tiles_down * tiles_across_c;
    tiles_across = (p.cols2 + TILE_COLS - 1) / TILE_COLS;
  }
  if (tile >= tiles_down * tiles_across) return;
  uint group_tiles = p.group_rows * tiles_across;
  uint first_row_tile = (tile / group_tiles) * p.group_rows;
  uint rows_in_group = min(tiles_down - first_row_tile, p.group_rows);
  uint row_tile = first_row_tile + (tile % group_tiles) % rows_in_group;
  uint col_tile = (tile % group_tiles) / rows_in_group;

  weight_stage_init();
  uint lane = gl_SubgroupInvocationID;
  uint subgroup = gl_SubgroupID;
  uint row0 = row_tile * TILE_ROWS + (subgroup / SUBGROUPS_PER_ROW) * ROWS;
  uint col0 = col_tile * TILE_COLS + (subgroup % SUBGROUPS_PER_ROW) * SG * COLS;
  uint64_t l_base = batch_base(p.l, p.stride_l, L_TYPE);
  if (SECOND_PRODUCT && second) run_tile(true, row0, col0, lane, l_base);
  else run_tile(false, row0, col0, lane, l_base);
}
