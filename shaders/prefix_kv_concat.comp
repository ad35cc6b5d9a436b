#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Prefix tuning (engine/kernels/prefix.hpp): one layer's attention keys and values with the
// trained prefix before every sequence: row b*(prefix+seq) + j is the prefix's row j (j < prefix)
// or the sequence's row j - prefix.
#include "common.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t prefix;  // (prefix, layers*2*kv_dim) fp32: layer l's keys at columns 2l*kv_dim, values at (2l+1)*kv_dim
  uint64_t k;       // (batch*seq, kv_dim) activation
  uint64_t v;       // (batch*seq, kv_dim) activation
  uint64_t k_out;   // (batch*(prefix+seq), kv_dim) activation, written
  uint64_t v_out;   // (batch*(prefix+seq), kv_dim) activation, written
  uint batch;
  uint seq;
  uint prefix_rows;
  uint kv_dim;
  uint layers;
  uint layer;
} p;

void main() {
  uint i = global_index_1d(256);
  uint total_rows = p.prefix_rows + p.seq;
  if (i >= p.batch * total_rows * p.kv_dim) return;
  uint column = i % p.kv_dim, row = i / p.kv_dim;
  uint b = row / total_rows, j = row % total_rows;
  float key, value;
  if (j < p.prefix_rows) {
    uint base = j * p.layers * 2 * p.kv_dim + 2 * p.layer * p.kv_dim + column;
    key = FloatBuffer(p.prefix).data[base];
    value = FloatBuffer(p.prefix).data[base + p.kv_dim];
  } else {
    uint source = (b * p.seq + j - p.prefix_rows) * p.kv_dim + column;
    key = act_load(ActBuffer(p.k), source);
    value = act_load(ActBuffer(p.v), source);
  }
  act_store(ActBuffer(p.k_out), i, key);
  act_store(ActBuffer(p.v_out), i, value);
}
