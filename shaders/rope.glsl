// Rotary position embedding, HF rotate_half convention, on x: (rows, heads, head_dim) fp32.
// For i < d/2, with angle = float(position[row]) * inv_freq[i] rounded to fp32 as HF does,
// forward:   out[i] = x[i] cos - x[i+d/2] sin,   out[i+d/2] = x[i+d/2] cos + x[i] sin
// backward (the inverse rotation, defined by BACKWARD):
//            dx[i] = dy[i] cos + dy[i+d/2] sin,  dx[i+d/2] = dy[i+d/2] cos - dy[i] sin
// cos and sin are multiplied by `attention_scaling` (1 except for YaRN/LongRoPE). One invocation
// per (row, head, i) pair; it reads both halves before writing them, so out may be x.
#include "common.glsl"
#include "trig.glsl"
#include "act_storage.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t x;          // (rows, heads, head_dim) activation (act_storage.glsl) (dy for the backward pass)
  uint64_t out_;       // (rows, heads, head_dim) activation; may be x
  uint64_t positions;  // (rows) uint32
  uint64_t inv_freq;   // (head_dim / 2) fp32
  uint rows, heads, head_dim;
  float attention_scaling;
} p;

void main() {
  uint half_dim = p.head_dim / 2;
  uint index = global_index_1d(256);
  if (index >= p.rows * p.heads * half_dim) return;
  uint row_head = index / half_dim;
  uint i = index - row_head * half_dim;
  uint row = row_head / p.heads;
  precise float angle = float(UintBuffer(p.positions).data[row]) * FloatBuffer(p.inv_freq).data[i];
  float sine, cosine;
  accurate_sincos(angle, sine, cosine);
  cosine *= p.attention_scaling;
  sine *= p.attention_scaling;
#ifdef BACKWARD
  sine = -sine;
#endif
  uint first = row_head * p.head_dim + i;
  ActBuffer x = ActBuffer(p.x), out_ = ActBuffer(p.out_);
  float a = act_load(x, first), b = act_load(x, first + half_dim);
  act_store(out_, first, a * cosine - b * sine);
  act_store(out_, first + half_dim, b * cosine + a * sine);
}
