// The shared-memory tiled body of shaders/matmul.comp (GPUs).
//
// Each workgroup computes a TILE_ROWS x TILE_COLS block of C (one batch entry: gl_WorkGroupID.z),
// stepping over P in slices of TILE_INNER: the slice of L and R is loaded into shared memory
// (vec4 global loads when the host found the groups of 4 aligned), then each thread
// accumulates a THREAD_ROWS x THREAD_COLS register tile as outer products of vec4s.
// Requires WORKGROUP_SIZE == (TILE_ROWS / THREAD_ROWS) * (TILE_COLS / THREAD_COLS).

// Slices of L and R for the current step over P, p-major: l_tile[p][i], r_tile[p][j] (as vec4s).
shared vec4 l_tile[TILE_INNER * TILE_ROWS / 4];
shared vec4 r_tile[TILE_INNER * TILE_COLS / 4];

void store_l(uint p_local, uint i_local, float value) {
  l_tile[(p_local * TILE_ROWS + i_local) / 4][i_local % 4] = value;
}
void store_r(uint p_local, uint j_local, float value) {
  r_tile[(p_local * TILE_COLS + j_local) / 4][j_local % 4] = value;
}

// The tile loads below spread 4-element groups over the threads in a fixed number of unrolled
// passes (a whole number whenever the tile holds a multiple of WORKGROUP_SIZE groups): lavapipe
// counts every loop iteration against one 65535 limit per invocation (CONVENTIONS.md), so the
// only loop left to count is the one over P in main().

// Loads L[row0 .. row0+TILE_ROWS, p0 .. p0+TILE_INNER] into l_tile; zeros outside the matrix.
void load_l_tile(uint64_t base, uint row0, uint p0, uint thread) {
  if (L_P_CONTIGUOUS) {
    const uint groups = TILE_INNER / 4;  // 4-element groups along p per row
    const uint count = TILE_ROWS * groups;
    [[unroll]] for (uint pass = 0; pass < (count + WORKGROUP_SIZE - 1) / WORKGROUP_SIZE; pass++) {
      uint u = thread + pass * WORKGROUP_SIZE;
      uint i_local = u / groups, p_local = (u % groups) * 4;
      uint i = row0 + i_local, pp = p0 + p_local;
      vec4 v = vec4(0);
      if (L_VEC4) {
        if (i < p.rows && pp < p.inner) v = load_left4(base, i * p.ld_l + pp);
      } else if (i < p.rows) {
        [[unroll]] for (uint q = 0; q < 4; q++)
          if (pp + q < p.inner) v[q] = load_left(base, i * p.ld_l + pp + q);
      }
      if (u < count) {
        [[unroll]] for (uint q = 0; q < 4; q++) store_l(p_local + q, i_local, v[q]);
      }
    }
  } else {
    const uint groups = TILE_ROWS / 4;  // 4-element groups along i per p
    const uint count = TILE_INNER * groups;
    [[unroll]] for (uint pass = 0; pass < (count + WORKGROUP_SIZE - 1) / WORKGROUP_SIZE; pass++) {
      uint u = thread + pass * WORKGROUP_SIZE;
      uint p_local = u / groups, i_local = (u % groups) * 4;
      uint i = row0 + i_local, pp = p0 + p_local;
      vec4 v = vec4(0);
      if (L_VEC4) {
        if (i < p.rows && pp < p.inner) v = load_left4(base, pp * p.ld_l + i);
      } else if (pp < p.inner) {
        [[unroll]] for (uint q = 0; q < 4; q++)
          if (i + q < p.rows) v[q] = load_left(base, pp * p.ld_l + i + q);
      }
      if (u < count) l_tile[(p_local * TILE_ROWS + i_local) / 4] = v;
    }
  }
}

// Loads R[p0 .. p0+TILE_INNER, col0 .. col0+TILE_COLS] into r_tile; zeros outside the matrix.
// `second`: R2 instead of R (a constant at each call site); cols, ld_r: that operand's.
void load_r_tile(uint64_t base, uint col0, uint p0, uint thread, bool second, uint cols, uint ld_r) {
  bool r_vec4 = second ? R2_VEC4 : R_VEC4;
  if (R_P_CONTIGUOUS) {
    const uint groups = TILE_INNER / 4;
    const uint count = TILE_COLS * groups;
    [[unroll]] for (uint pass = 0; pass < (count + WORKGROUP_SIZE - 1) / WORKGROUP_SIZE; pass++) {
      uint u = thread + pass * WORKGROUP_SIZE;
      uint j_local = u / groups, p_local = (u % groups) * 4;
      uint j = col0 + j_local, pp = p0 + p_local;
      vec4 v = vec4(0);
      if (r_vec4) {
        if (j < cols && pp < p.inner) v = load_r4(second, base, j * ld_r + pp);
      } else if (j < cols) {
        [[unroll]] for (uint q = 0; q < 4; q++)
          if (pp + q < p.inner) v[q] = load_r(second, base, j * ld_r + pp + q);
      }
      if (u < count) {
        [[unroll]] for (uint q = 0; q < 4; q++) store_r(p_local + q, j_local, v[q]);
      }
    }
  } else {
    const uint groups = TILE_COLS / 4;
    const uint count = TILE_INNER * groups;
    [[unroll]] for (uint pass = 0; pass < (count + WORKGROUP_SIZE - 1) / WORKGROUP_SIZE; pass++) {
      uint u = thread + pass * WORKGROUP_SIZE;
      uint p_local = u / groups, j_local = (u % groups) * 4;
      uint j = col0 + j_local, pp = p0 + p_local;
      vec4 v = vec4(0);
      if (r_vec4) {
        if (j < cols && pp < p.inner) v = load_r4(second, base, pp * ld_r + j);
      } else if (pp < p.inner) {
        [[unroll]] for (uint q = 0; q < 4; q++)
          if (j + q < cols) v[q] = load_r(second, base, pp * ld_r + j + q);
      }
      if (u < count) r_tile[(p_local * TILE_COLS + j_local) / 4] = v;
    }
  }
}

const uint ROW_GROUPS = THREAD_ROWS / 4;  // vec4 groups per thread along rows
const uint COL_GROUPS = THREAD_COLS / 4;
const uint THREADS_PER_ROW = TILE_COLS / THREAD_COLS;

// One workgroup tile of C (or of C2 when `second`, a constant at each call site): sweep P, store.
void run_tile(bool second, uint row0, uint col0, uint thread) {
  uint cols = product_cols(second), ld_r = product_ld_r(second);
  uint64_t l_base = batch_base(p.l, p.stride_l, L_TYPE);
  uint64_t r_base = product_r_base(second);

  // This thread's register tile: rows g*(TILE_ROWS/ROW_GROUPS) + ty*4 + 0..3 for each group g
  // (and likewise for columns), so neighbouring threads read neighbouring vec4s of shared memory.
  uint ty = thread / THREADS_PER_ROW, tx = thread % THREADS_PER_ROW;
  vec4 acc[ROW_GROUPS * 4][COL_GROUPS];
  [[unroll]] for (uint i = 0; i < ROW_GROUPS * 4; i++)
    [[unroll]] for (uint g = 0; g < COL_GROUPS; g++) acc[i][g] = vec4(0);

  for (uint p0 = 0; p0 < p.inner; p0 += TILE_INNER) {
    load_l_tile(l_base, row0, p0, thread);
    load_r_tile(r_base, col0, p0, thread, second, cols, ld_r);
    barrier();
    [[unroll]] for (uint pl = 0; pl < TILE_INNER; pl++) {
      vec4 a[ROW_GROUPS], b[COL_GROUPS];
      [[unroll]] for (uint g = 0; g < ROW_GROUPS; g++)
        a[g] = l_tile[(pl * TILE_ROWS) / 4 + g * (TILE_ROWS / 4 / ROW_GROUPS) + ty];
      [[unroll]] for (uint g = 0; g < COL_GROUPS; g++)
        b[g] = r_tile[(pl * TILE_COLS) / 4 + g * (TILE_COLS / 4 / COL_GROUPS) + tx];
      [[unroll]] for (uint gi = 0; gi < ROW_GROUPS; gi++)
        [[unroll]] for (uint q = 0; q < 4; q++)
          [[unroll]] for (uint g = 0; g < COL_GROUPS; g++) acc[gi * 4 + q][g] += a[gi][q] * b[g];
    }
    barrier();
  }

  uint64_t c_base = batch_base(p.c, p.stride_c, C_TYPE);
  [[unroll]] for (uint gi = 0; gi < ROW_GROUPS; gi++)
    [[unroll]] for (uint q = 0; q < 4; q++) {
      uint i = row0 + gi * (TILE_ROWS / ROW_GROUPS) + ty * 4 + q;
      if (i >= p.rows) continue;
      [[unroll]] for (uint g = 0; g < COL_GROUPS; g++)
        [[unroll]] for (uint e = 0; e < 4; e++) {
          uint j = col0 + g * (TILE_COLS / COL_GROUPS) + tx * 4 + e;
          if (j >= cols) continue;
          if (second) store_output2(i, j, acc[gi * 4 + q][g][e]);
          else store_output(c_base, i, j, acc[gi * 4 + q][g][e]);
        }
    }
}

void main() {
  // Column tiles: C's, then (SECOND_PRODUCT) C2's, which read the same L rows.
  uint tiles_across_c = (p.cols + TILE_COLS - 1) / TILE_COLS;
  bool second = SECOND_PRODUCT && gl_WorkGroupID.x >= tiles_across_c;
  uint row0 = gl_WorkGroupID.y * TILE_ROWS, col0 = (gl_WorkGroupID.x - (second ? tiles_across_c : 0)) * TILE_COLS;
  if (SECOND_PRODUCT && second) run_tile(true, row0, col0, gl_LocalInvocationIndex);
  else run_tile(false, row0, col0, gl_LocalInvocationIndex);
}
