// Helpers for kernels that give one workgroup to one row (rmsnorm, cross-entropy, ...); this
// include also declares their workgroup size.
//
// ROW_THREADS, the workgroup size, is specialization constant 0, a power of two chosen once per
// device by engine/kernels row_threads(): 256 on GPUs; 32 on CPU drivers such as lavapipe, where
// each barrier switches between all the workgroup's SIMD batches and 256 invocations made
// rmsnorm 3-4x slower. Reductions go through shared memory in a fixed tree order, so a result
// depends only on the data and ROW_THREADS, whatever the subgroup size.
layout(constant_id = 0) const uint ROW_THREADS = 256;
layout(local_size_x_id = 0) in;

// Workgroups are launched as a 2-D grid (engine/kernels grid_1d(count, 1)) so that more than
// 65535 rows can be covered; this is the linear workgroup index.
uint workgroup_index_1d() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

shared float reduce_scratch[ROW_THREADS];

// Sum of `value` over the workgroup; every invocation gets the total. Must be reached by all
// invocations of the workgroup (it contains barriers).
float workgroup_sum(float value) {
  uint lane = gl_LocalInvocationID.x;
  reduce_scratch[lane] = value;
  barrier();
  for (uint stride = ROW_THREADS / 2; stride > 0; stride >>= 1) {
    if (lane < stride) reduce_scratch[lane] += reduce_scratch[lane + stride];
    barrier();
  }
  float total = reduce_scratch[0];
  barrier();  // the scratch is reused by the next call
  return total;
}
