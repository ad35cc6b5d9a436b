// Multi-tensor launches: one dispatch covers every tensor of a TensorList (engine/kernels/
// optimizer.hpp). Each workgroup handles one chunk of one tensor; chunks are numbered across the
// list in table order, and a workgroup finds its tensor by binary search over first_chunk.
// Needs common.glsl first.

// Mirrors TensorList::Entry (std430, 48 bytes).
struct TensorEntry {
  uint64_t param;   // (count) fp32
  uint64_t grad;    // (count) fp32
  uint64_t state0;  // (count) fp32 or 0
  uint64_t state1;  // (count) fp32 or 0
  uint count;
  uint first_chunk;
  float lr_scale;
  float decay_scale;
};
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer TensorTable { TensorEntry entries[]; };

// Chunks are launched as a (x, y) grid so that more than 65535 of them fit (grid_1d).
uint chunk_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// The last tensor whose first chunk is <= chunk (tensors with no elements own no chunk and are
// skipped because a later tensor has the same first_chunk). Every thread of the workgroup gets
// the same answer, so control flow stays uniform.
uint find_tensor(TensorTable table, uint tensor_count, uint chunk) {
  uint low = 0, high = tensor_count - 1;
  while (low < high) {
    uint middle = (low + high + 1) >> 1;
    if (table.entries[middle].first_chunk <= chunk) low = middle;
    else high = middle - 1;
  }
  return low;
}
