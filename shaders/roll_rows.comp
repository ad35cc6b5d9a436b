#version 460
#extension GL_GOOGLE_include_directive : require
// dst = src with the words [first_word, row_words) of every row rolled along its sequence:
//   dst[b, i, w] = src[b, (i + shift) mod seq, w]  for w >= first_word,  src[b, i, w] otherwise.
// Words are 32-bit, so one shader serves fp32 and (pairs of) 16-bit values. LongLoRA's S2
// attention rolls the last half of the heads of q, k, v by -group/2 and the output back.
// mode 1 (split, row_words = 2 * first_word): the same roll, written as two tensors one after the
// other, the unrolled words [0, first_word) of every row, then the rolled rest:
//   dst[part, b, i, w] = src[b, part ? (i + shift) mod seq : i, part * first_word + w]
// mode 2 (merge): its inverse shape, dst[b, i, part * first_word + w] = src[part, b, part ? (i + shift) mod
// seq : i, w]. S2 attention then attends over the two halves of the heads as separate sequences, so
// each half can carry its own segment ids (the shifted half's rolled with it).
#include "common.glsl"
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint64_t src;  // (batch*seq, row_words) 32-bit words (mode 2: (2, batch*seq, first_word))
  uint64_t dst;  // (batch*seq, row_words) (mode 1: (2, batch*seq, first_word)), a different buffer
  uint rows, seq, row_words, first_word;
  uint shift;    // in [0, seq): the roll amount modulo seq
  uint mode;     // 0 same, 1 split, 2 merge
} p;

uint rolled(uint row) {
  uint i = row % p.seq;
  return row - i + (i + p.shift) % p.seq;
}

void main() {
  uint index = global_index_1d(256);
  if (index >= p.rows * p.row_words) return;
  if (p.mode == 1) {
    uint part_words = p.rows * p.first_word;
    uint part = index / part_words, within = index - part * part_words;
    uint row = within / p.first_word, word = within - row * p.first_word;
    uint source_row = part == 1 ? rolled(row) : row;
    UintBuffer(p.dst).data[index] = UintBuffer(p.src).data[source_row * p.row_words + part * p.first_word + word];
    return;
  }
  uint row = index / p.row_words;
  uint word = index - row * p.row_words;
  if (p.mode == 2) {
    uint part = word >= p.first_word ? 1 : 0;
    uint source_row = part == 1 ? rolled(row) : row;
    UintBuffer(p.dst).data[index] =
        UintBuffer(p.src).data[(part * p.rows + source_row) * p.first_word + word - part * p.first_word];
    return;
  }
  uint source_row = word >= p.first_word ? rolled(row) : row;
  UintBuffer(p.dst).data[index] = UintBuffer(p.src).data[source_row * p.row_words + word];
}
