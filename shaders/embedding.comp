#version 460
//! variant act_f16: -DACT_F16
//! variant act_bf16: -DACT_BF16
//! variant f16_act_f16: -DTABLE_F16 -DACT_F16
//! variant f16_act_bf16: -DTABLE_F16 -DACT_BF16
//! variant bf16_act_f16: -DTABLE_BF16 -DACT_F16
//! variant bf16_act_bf16: -DTABLE_BF16 -DACT_BF16
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
//! variant f16: -DTABLE_F16
//! variant bf16: -DTABLE_BF16
// Embedding lookup: out[t, :] = table[ids[t], :]. The table may be stored as fp32, fp16 or bf16
// (a frozen base weight); the output is an activation (act_storage.glsl: variants act_*). An id >= vocab gives a row of zeros instead of
// reading out of bounds (the host validates ids; this only keeps a bad id from faulting).
#include "common.glsl"
#include "act_storage.glsl"
#if defined(TABLE_F16) || defined(TABLE_BF16)
#include "convert.glsl"
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Uint16Buffer { uint16_t data[]; };
#endif
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t ids;    // (tokens) uint32
  uint64_t table;  // (vocab, hidden) fp32 / fp16 / bf16
  uint64_t out_;   // (tokens, hidden) activation
  uint tokens, vocab, hidden;
} p;

void main() {
  uint index = global_index_1d(256);
  if (index >= p.tokens * p.hidden) return;
  uint token = index / p.hidden;
  uint column = index - token * p.hidden;
  uint id = UintBuffer(p.ids).data[token];
  float value = 0.0;
  if (id < p.vocab) {
    uint source = id * p.hidden + column;
#if defined(TABLE_F16)
    value = half_bits_to_float(uint(Uint16Buffer(p.table).data[source]));
#elif defined(TABLE_BF16)
    value = bf16_bits_to_float(uint(Uint16Buffer(p.table).data[source]));
#else
    value = FloatBuffer(p.table).data[source];
#endif
  }
  act_store(ActBuffer(p.out_), index, value);
}
