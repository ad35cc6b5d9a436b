// Deterministic column sums over rows, pass 1: partials[block, c] = sum of TERM(r, c) over the
// rows r of row block `block` (gl_WorkGroupID.y), in a fixed order. sum_rows_finish adds the
// partials of each column in block order. The split (col_lanes, rows_per_block) depends only on
// the shape (engine/kernels column_sum_plan), never on the device, so results are reproducible.
// A workgroup covers col_lanes columns x (THREADS / col_lanes) row lanes; narrow inputs (cols = 1:
// a loss sum) use all lanes on rows, wide ones put 64 consecutive columns on a coalesced load.
// The includer defines THREADS, the push constants (with cols, rows, col_lanes, rows_per_block,
// partials) and TERM(row, column).
shared float lane_sums[THREADS];

void main() {
  uint lane = gl_LocalInvocationID.x;
  uint column_lane = lane % p.col_lanes, row_lane = lane / p.col_lanes;
  uint row_lanes = THREADS / p.col_lanes;
  uint column = gl_WorkGroupID.x * p.col_lanes + column_lane;
  uint row_begin = gl_WorkGroupID.y * p.rows_per_block;
  uint row_end = min(row_begin + p.rows_per_block, p.rows);
  float sum = 0.0;
  if (column < p.cols)
    for (uint row = row_begin + row_lane; row < row_end; row += row_lanes) sum += TERM(row, column);
  lane_sums[lane] = sum;
  barrier();
  if (row_lane == 0 && column < p.cols) {
    float total = 0.0;
    for (uint r = 0; r < row_lanes; r++) total += lane_sums[r * p.col_lanes + column_lane];
    FloatBuffer(p.partials).data[gl_WorkGroupID.y * p.cols + column] = total;
  }
}
