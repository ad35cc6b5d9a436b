#version 460
#extension GL_GOOGLE_include_directive : require
// dst = src with the words [first_word, row_words) of every row rolled along its sequence:
//   dst[b, i, w] = src[b, (i + shift) mod seq, w]  for w >= first_word,  src[b, i, w] otherwise.
// Words are 32-bit, so one shader serves fp32 and (pairs of) 16-bit values. LongLoRA's S2
// attention rolls the last half of the heads of q, k, v by -group/2 and the output back.
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t src;  // (batch*seq, row_words) 32-bit words
  uint64_t dst;  // (batch*seq, row_words), a different buffer
  uint rows, seq, row_words, first_word;
  uint shift;    // in [0, seq): the roll amount modulo seq
} p;

void main() {
  uint index = global_index_1d(256);
  if (index >= p.rows * p.row_words) return;
  uint row = index / p.row_words;
  uint word = index - row * p.row_words;
  uint source_row = row;
  if (word >= p.first_word) {
    uint i = row % p.seq;
    source_row = row - i + (i + p.shift) % p.seq;
  }
  UintBuffer(p.dst).data[index] = UintBuffer(p.src).data[source_row * p.row_words + word];
}
