#version 460
#extension GL_GOOGLE_include_directive : require
// Prefix tuning (engine/kernels/prefix.hpp): the positions and key segments of a micro-batch whose
// keys have `prefix` cells before every sequence. Positions move by `prefix` (transformers numbers
// the tokens after a past of that length); each prefix key takes its row's first segment, so every
// query of an unpacked row sees it.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t positions;     // (batch*seq) uint32
  uint64_t segments;      // (batch*seq) uint32
  uint64_t positions_out; // (batch*seq) uint32, written: positions + prefix
  uint64_t kv_segments;   // (batch*(prefix+seq)) uint32, written
  uint batch;
  uint seq;
  uint prefix_rows;
} p;

void main() {
  uint i = global_index_1d(256);
  uint total_rows = p.prefix_rows + p.seq;
  if (i < p.batch * p.seq) UintBuffer(p.positions_out).data[i] = UintBuffer(p.positions).data[i] + p.prefix_rows;
  if (i >= p.batch * total_rows) return;
  uint b = i / total_rows, j = i % total_rows;
  uint source = b * p.seq + (j < p.prefix_rows ? 0 : j - p.prefix_rows);
  UintBuffer(p.kv_segments).data[i] = UintBuffer(p.segments).data[source];
}
