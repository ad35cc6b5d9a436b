#version 460
//! variant f16: -DACT_F16
//! variant bf16: -DACT_BF16
#extension GL_GOOGLE_include_directive : require
// Gradients of prefix_kv_concat: the sequence rows' dk, dv (written), and the prefix's layer-l
// columns += the prefix rows' gradients summed over the batch (in batch order: deterministic).
// Threads [0, batch*seq*kv_dim) copy; the next prefix*kv_dim threads sum.
#include "common.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t dk_in;     // (batch*(prefix+seq), kv_dim) activation
  uint64_t dv_in;     // (batch*(prefix+seq), kv_dim) activation
  uint64_t dk;        // (batch*seq, kv_dim) activation, written
  uint64_t dv;        // (batch*seq, kv_dim) activation, written
  uint64_t d_prefix;  // (prefix, layers*2*kv_dim) fp32, accumulated (layer l's columns only)
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
  uint copies = p.batch * p.seq * p.kv_dim;
  if (i < copies) {
    uint column = i % p.kv_dim, row = i / p.kv_dim;
    uint b = row / p.seq, t = row % p.seq;
    uint source = (b * total_rows + p.prefix_rows + t) * p.kv_dim + column;
    act_store(ActBuffer(p.dk), i, act_load(ActBuffer(p.dk_in), source));
    act_store(ActBuffer(p.dv), i, act_load(ActBuffer(p.dv_in), source));
    return;
  }
  uint s = i - copies;
  if (s >= p.prefix_rows * p.kv_dim) return;
  uint column = s % p.kv_dim, j = s / p.kv_dim;
  float key = 0.0, value = 0.0;
  for (uint b = 0; b < p.batch; b++) {
    uint source = (b * total_rows + j) * p.kv_dim + column;
    key += act_load(ActBuffer(p.dk_in), source);
    value += act_load(ActBuffer(p.dv_in), source);
  }
  uint base = j * p.layers * 2 * p.kv_dim + 2 * p.layer * p.kv_dim + column;
  FloatBuffer(p.d_prefix).data[base] += key;
  FloatBuffer(p.d_prefix).data[base + p.kv_dim] += value;
}
