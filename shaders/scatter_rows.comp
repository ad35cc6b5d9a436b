#version 460
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_16bit_storage : require
//! variant f16: -DTABLE_F16
//! variant bf16: -DTABLE_BF16
// table[indices[i], :] = rows[i, :]: writes trained embedding rows (PEFT's trainable tokens) into
// the frozen table the lookup and a tied lm_head read, converted to the table's storage type.
// Indices >= vocab are skipped (the host validates them; this only keeps a bad one from faulting).
#include "common.glsl"
#if defined(TABLE_F16) || defined(TABLE_BF16)
#include "convert.glsl"
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Uint16Buffer { uint16_t data[]; };
#endif
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t rows;     // (count, hidden) fp32
  uint64_t indices;  // (count) uint32
  uint64_t table;    // (vocab, hidden) fp32 / fp16 / bf16
  uint count, vocab, hidden;
} p;

void main() {
  uint index = global_index_1d(256);
  if (index >= p.count * p.hidden) return;
  uint row = index / p.hidden;
  uint column = index - row * p.hidden;
  uint id = UintBuffer(p.indices).data[row];
  if (id >= p.vocab) return;
  float value = FloatBuffer(p.rows).data[index];
  uint target = id * p.hidden + column;
#if defined(TABLE_F16)
  Uint16Buffer(p.table).data[target] = uint16_t(float_to_half_bits(value));
#elif defined(TABLE_BF16)
  Uint16Buffer(p.table).data[target] = uint16_t(float_to_bf16_bits(value));
#else
  FloatBuffer(p.table).data[target] = value;
#endif
}
