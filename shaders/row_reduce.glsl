// Helpers for kernels that give one workgroup to one row (rmsnorm, cross-entropy, ...).
// Include AFTER the layout(local_size_x = ...) line, with REDUCE_THREADS defined as the workgroup
// size (a power of two). Reductions go through shared memory in a fixed tree order, so a result
// depends only on the data and REDUCE_THREADS: the same on every device, whatever its subgroup size.

// Workgroups are launched as a 2-D grid (engine/kernels grid_1d(count, 1)) so that more than
// 65535 rows can be covered; this is the linear workgroup index.
uint workgroup_index_1d() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

shared float reduce_scratch[REDUCE_THREADS];

// Sum of `value` over the workgroup; every invocation gets the total. Must be reached by all
// invocations of the workgroup (it contains barriers).
float workgroup_sum(float value) {
  uint lane = gl_LocalInvocationID.x;
  reduce_scratch[lane] = value;
  barrier();
  for (uint stride = REDUCE_THREADS / 2; stride > 0; stride >>= 1) {
    if (lane < stride) reduce_scratch[lane] += reduce_scratch[lane + stride];
    barrier();
  }
  float total = reduce_scratch[0];
  barrier();  // the scratch is reused by the next call
  return total;
}
