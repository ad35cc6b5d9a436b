#include "engine/kernels/s2_attention.hpp"

#include <cmath>
#include <vector>

#include "engine/base/error.hpp"
#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {

uint64_t round_up(uint64_t bytes) { return (bytes + 255) / 256 * 256; }  // keeps every slice 16-byte aligned

// The scratch slices, in order: q, k, v, o split into their unshifted and (rolled) shifted halves of
// the heads, then (backward) d_o, dq, dk, dv the same way, and last the two halves' segment ids.
struct S2Scratch {
  BufferRange q, k, v, o, d_o, dq, dk, dv, segments;
};

uint64_t segment_bytes(uint64_t rows) { return round_up(2 * rows * 4); }

S2Scratch carve(const BufferRange& scratch, const AttentionShape& shape, DType act, bool backward) {
  const uint64_t rows = uint64_t(shape.batch) * shape.seq_q;
  const uint64_t q_bytes = round_up(act_bytes(rows * shape.q_heads * shape.head_dim, act));
  const uint64_t kv_bytes = round_up(act_bytes(rows * shape.kv_heads * shape.head_dim, act));
  require_bytes(scratch, s2_attention_scratch_bytes(rows, shape.q_heads, shape.kv_heads, shape.head_dim, act, backward),
                "s2_attention", "scratch");
  S2Scratch s;
  uint64_t offset = 0;
  auto take = [&](uint64_t bytes) {
    BufferRange part = slice(scratch, offset, bytes);
    offset += bytes;
    return part;
  };
  s.q = take(q_bytes), s.k = take(kv_bytes), s.v = take(kv_bytes), s.o = take(q_bytes);
  if (backward) s.d_o = take(q_bytes), s.dq = take(q_bytes), s.dk = take(kv_bytes), s.dv = take(kv_bytes);
  s.segments = take(segment_bytes(rows));
  return s;
}

enum class RollLayout : uint32_t { same = 0, split = 1, merge = 2 };

void record_roll(Recorder& recorder, const BufferRange& src, const BufferRange& dst, uint32_t rows, uint32_t seq,
                 uint32_t row_words, uint32_t first_word, int64_t shift, RollLayout layout) {
  if (rows == 0) return;
  VKT_ASSERT(seq > 0 && rows % seq == 0 && first_word <= row_words, "roll_rows: bad shape");
  VKT_ASSERT(layout == RollLayout::same || row_words == 2 * first_word, "roll_rows: split halves must be equal");
  require_index_range(uint64_t(rows) * row_words, "roll_rows");
  require_bytes(src, uint64_t(rows) * row_words * 4, "roll_rows", "src");
  require_bytes(dst, uint64_t(rows) * row_words * 4, "roll_rows", "dst");
  const uint32_t positive_shift = static_cast<uint32_t>(((shift % seq) + seq) % seq);
  struct {
    uint64_t src, dst;
    uint32_t rows, seq, row_words, first_word, shift, layout;
  } push{src.address, dst.address, rows, seq, row_words, first_word, positive_shift, static_cast<uint32_t>(layout)};
  record_dispatch(recorder, {.shader = "roll_rows",
                             .push = push,
                             .grid = grid_1d(uint64_t(rows) * row_words, 256),
                             .reads = {src},
                             .writes = {dst}});
}

// A (rows, heads*head_dim) act tensor to its split halves (the shifted heads rolled by `shift` rows
// within each sequence), or (merge) back.
void roll_heads(Recorder& recorder, const BufferRange& src, const BufferRange& dst, const AttentionShape& shape,
                uint32_t heads, int64_t shift, DType act, RollLayout layout) {
  const uint32_t row_words = static_cast<uint32_t>(act_bytes(uint64_t(heads) * shape.head_dim, act) / 4);
  const uint32_t first_word = static_cast<uint32_t>(act_bytes(uint64_t(heads / 2) * shape.head_dim, act) / 4);
  record_roll(recorder, src, dst, shape.batch * shape.seq_q, shape.seq_q, row_words, first_word, shift, layout);
}

// The grouped attention over the split halves: (2 * batch * seq/group) sequences of `group` tokens,
// half of the heads each.
AttentionShape split_group_shape(const AttentionShape& shape, uint32_t group) {
  AttentionShape grouped = s2_group_shape(shape, group);
  grouped.batch *= 2;
  grouped.q_heads /= 2;
  grouped.kv_heads /= 2;
  return grouped;
}

// The halves' segment ids (2, batch*seq): as given for the unshifted heads, rolled for the shifted
// ones, so a query never sees another example's or padding's keys in a wrapped group. Null: none.
const BufferRange* split_segments(Recorder& recorder, const BufferRange* segments, const S2Scratch& s,
                                  const AttentionShape& shape, int64_t shift) {
  if (!segments) return nullptr;
  const uint32_t rows = shape.batch * shape.seq_q;
  record_roll(recorder, *segments, slice(s.segments, 0, uint64_t(rows) * 4), rows, shape.seq_q, 1, 1, 0,
              RollLayout::same);
  record_roll(recorder, *segments, slice(s.segments, uint64_t(rows) * 4, uint64_t(rows) * 4), rows, shape.seq_q, 1, 0,
              shift, RollLayout::same);
  return &s.segments;
}

// The forward's and the backward's first step: q, k and v into the scratch, the second half of the
// heads rolled by -half along the sequence (LongLoRA's roll(-group/2)).
void roll_qkv_in(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                 const S2Scratch& s, const AttentionShape& shape, int64_t half, DType act) {
  roll_heads(recorder, q, s.q, shape, shape.q_heads, half, act, RollLayout::split);
  roll_heads(recorder, k, s.k, shape, shape.kv_heads, half, act, RollLayout::split);
  roll_heads(recorder, v, s.v, shape, shape.kv_heads, half, act, RollLayout::split);
}

}  // namespace

std::string s2_attention_unsupported(const AttentionShape& shape, uint32_t group) {
  const uint32_t seq = shape.seq_q;
  if (group < 2 || group % 2 != 0)
    return "the group size (" + std::to_string(group) + ") must be even (LongLoRA rolls by group/2)";
  if (seq % group != 0)
    return "the sequence length " + std::to_string(seq) + " is not a multiple of the group size " +
           std::to_string(group);
  if (shape.q_heads % 2 != 0 || shape.kv_heads % 2 != 0)
    return "S2 attention shifts half of the heads: it needs even attention and key/value head counts (got " +
           std::to_string(shape.q_heads) + " and " + std::to_string(shape.kv_heads) + ")";
  if (shape.q_offset != 0 || shape.seq_kv != seq) return "S2 attention is for training (no KV cache)";
  if (shape.softcap != 0 || (shape.window != 0 && shape.window < seq))
    return "S2 attention does not combine with soft-capping or a sliding window shorter than the sequence";
  return {};
}

AttentionShape s2_group_shape(const AttentionShape& shape, uint32_t group) {
  AttentionShape grouped = shape;
  grouped.batch = shape.batch * (shape.seq_q / group);
  grouped.seq_q = grouped.seq_kv = group;
  return grouped;
}

uint64_t s2_attention_scratch_bytes(uint64_t rows, uint64_t q_heads, uint64_t kv_heads, uint64_t head_dim, DType act,
                                    bool backward) {
  const uint64_t q_bytes = round_up(act_bytes(rows * q_heads * head_dim, act));
  const uint64_t kv_bytes = round_up(act_bytes(rows * kv_heads * head_dim, act));
  return (backward ? 2 : 1) * (2 * q_bytes + 2 * kv_bytes) + segment_bytes(rows);
}

void roll_rows(Recorder& recorder, const BufferRange& src, const BufferRange& dst, uint32_t rows, uint32_t seq,
               uint32_t row_words, uint32_t first_word, int64_t shift) {
  record_roll(recorder, src, dst, rows, seq, row_words, first_word, shift, RollLayout::same);
}

void s2_attention_forward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                          const BufferRange& o, const BufferRange& lse, const AttentionShape& shape, uint32_t group,
                          const BufferRange& scratch, DType act, const BufferRange* segments) {
  const std::string why = s2_attention_unsupported(shape, group);
  VKT_ASSERT(why.empty(), why);
  const S2Scratch s = carve(scratch, shape, act, false);
  const int64_t half = group / 2;
  roll_qkv_in(recorder, q, k, v, s, shape, half, act);
  const BufferRange* halves = split_segments(recorder, segments, s, shape, half);
  attention_forward(recorder, s.q, s.k, s.v, s.o, lse, split_group_shape(shape, group), halves, nullptr, nullptr, act);
  roll_heads(recorder, s.o, o, shape, shape.q_heads, -half, act, RollLayout::merge);  // and back
}

void s2_attention_backward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                           const BufferRange& o, const BufferRange& d_o, const BufferRange& lse,
                           const BufferRange& delta, const BufferRange& dq, const BufferRange& dk,
                           const BufferRange& dv, const AttentionShape& shape, uint32_t group,
                           const BufferRange& scratch, DType act, const BufferRange* segments) {
  const std::string why = s2_attention_unsupported(shape, group);
  VKT_ASSERT(why.empty(), why);
  const S2Scratch s = carve(scratch, shape, act, true);
  const int64_t half = group / 2;
  const auto split = RollLayout::split, merge = RollLayout::merge;
  roll_qkv_in(recorder, q, k, v, s, shape, half, act);
  roll_heads(recorder, o, s.o, shape, shape.q_heads, half, act, split);
  roll_heads(recorder, d_o, s.d_o, shape, shape.q_heads, half, act, split);
  const BufferRange* halves = split_segments(recorder, segments, s, shape, half);
  attention_backward(recorder, s.q, s.k, s.v, s.o, s.d_o, lse, delta, s.dq, s.dk, s.dv, split_group_shape(shape, group),
                     halves, nullptr, act);
  // A roll is a permutation: its gradient is the inverse roll.
  roll_heads(recorder, s.dq, dq, shape, shape.q_heads, -half, act, merge);
  roll_heads(recorder, s.dk, dk, shape, shape.kv_heads, -half, act, merge);
  roll_heads(recorder, s.dv, dv, shape, shape.kv_heads, -half, act, merge);
}

}  // namespace vkt::kernels

namespace vkt::ref {

namespace {

// One half of the heads of a (batch*seq, heads*head_dim) tensor as its own (batch*seq, heads/2*head_dim)
// tensor, rows rolled by `shift` within each sequence (half 1 of S2 attention), and back.
std::vector<float> take_half(const float* x, const kernels::AttentionShape& shape, uint32_t heads, uint32_t half_index,
                             int64_t shift) {
  const uint32_t seq = shape.seq_q, width = heads * shape.head_dim, part = width / 2;
  std::vector<float> out(size_t(shape.batch) * seq * part);
  for (uint32_t b = 0; b < shape.batch; b++)
    for (uint32_t i = 0; i < seq; i++) {
      const uint32_t source = static_cast<uint32_t>(((int64_t(i) + shift) % seq + seq) % seq);
      for (uint32_t c = 0; c < part; c++)
        out[(size_t(b) * seq + i) * part + c] = x[(size_t(b) * seq + source) * width + half_index * part + c];
    }
  return out;
}

void put_half(const std::vector<float>& half, float* x, const kernels::AttentionShape& shape, uint32_t heads,
              uint32_t half_index, int64_t shift) {
  const uint32_t seq = shape.seq_q, width = heads * shape.head_dim, part = width / 2;
  for (uint32_t b = 0; b < shape.batch; b++)
    for (uint32_t i = 0; i < seq; i++) {
      const uint32_t source = static_cast<uint32_t>(((int64_t(i) + shift) % seq + seq) % seq);
      for (uint32_t c = 0; c < part; c++)
        x[(size_t(b) * seq + source) * width + half_index * part + c] = half[(size_t(b) * seq + i) * part + c];
    }
}

}  // namespace

void s2_attention_forward(const float* q, const float* k, const float* v, float* o,
                          const kernels::AttentionShape& shape, uint32_t group, const uint32_t* segments) {
  const uint32_t seq = shape.seq_q, heads = shape.q_heads, hd = shape.head_dim, half = group / 2;
  const uint32_t per_kv = heads / shape.kv_heads;
  std::vector<double> scores(group);
  for (uint32_t b = 0; b < shape.batch; b++)
    for (uint32_t h = 0; h < heads; h++) {
      const bool shifted = h >= heads / 2;
      const uint32_t kvh = h / per_kv;
      for (uint32_t i = 0; i < seq; i++) {
        // Query i's index in its head's (rolled) sequence, its group, and the keys it sees there:
        // those of its own segment (example; padding is a segment of its own) when segments are given.
        const uint32_t r = shifted ? (i + seq - half) % seq : i;
        const uint32_t first = r / group * group;
        auto key_of = [&](uint32_t rolled) { return shifted ? (rolled + half) % seq : rolled; };
        auto visible = [&](uint32_t rolled) {
          return !segments || segments[size_t(b) * seq + key_of(rolled)] == segments[size_t(b) * seq + i];
        };
        const float* qi = q + (size_t(b) * seq + i) * heads * hd + h * hd;
        double max_score = -INFINITY;
        for (uint32_t rr = first; rr <= r; rr++) {
          if (!visible(rr)) continue;
          const float* kj = k + (size_t(b) * seq + key_of(rr)) * shape.kv_heads * hd + kvh * hd;
          double dot = 0;
          for (uint32_t d = 0; d < hd; d++) dot += double(qi[d]) * kj[d];
          scores[rr - first] = dot * shape.scale;
          max_score = std::max(max_score, scores[rr - first]);
        }
        double total = 0;
        for (uint32_t rr = first; rr <= r; rr++)
          if (visible(rr)) total += std::exp(scores[rr - first] - max_score);
        float* oi = o + (size_t(b) * seq + i) * heads * hd + h * hd;
        for (uint32_t d = 0; d < hd; d++) {
          double acc = 0;
          for (uint32_t rr = first; rr <= r; rr++)
            if (visible(rr))
              acc += std::exp(scores[rr - first] - max_score) / total *
                     v[(size_t(b) * seq + key_of(rr)) * shape.kv_heads * hd + kvh * hd + d];
          oi[d] = static_cast<float>(acc);
        }
      }
    }
}

void s2_attention_backward(const float* q, const float* k, const float* v, const float* d_o, float* dq, float* dk,
                           float* dv, const kernels::AttentionShape& shape, uint32_t group, const uint32_t* segments) {
  // Each half of the heads on its own: the unshifted half as is, the shifted half rolled by group/2
  // (segments too), attention over its groups, and the gradients rolled back.
  kernels::AttentionShape grouped = kernels::s2_group_shape(shape, group);
  grouped.q_heads /= 2;
  grouped.kv_heads /= 2;
  const size_t rows = size_t(shape.batch) * shape.seq_q;
  for (uint32_t part = 0; part < 2; part++) {
    const int64_t shift = part ? group / 2 : 0;
    const std::vector<float> hq = take_half(q, shape, shape.q_heads, part, shift),
                             hk = take_half(k, shape, shape.kv_heads, part, shift),
                             hv = take_half(v, shape, shape.kv_heads, part, shift),
                             hd_o = take_half(d_o, shape, shape.q_heads, part, shift);
    std::vector<uint32_t> rolled_segments;
    if (segments) {
      rolled_segments.resize(rows);
      for (size_t row = 0; row < rows; row++) {
        const size_t i = row % shape.seq_q;
        rolled_segments[row] = segments[row - i + (i + size_t(shift)) % shape.seq_q];
      }
    }
    std::vector<float> gq(hq.size()), gk(hk.size()), gv(hv.size());
    attention_backward(hq.data(), hk.data(), hv.data(), hd_o.data(), gq.data(), gk.data(), gv.data(), grouped,
                       segments ? rolled_segments.data() : nullptr);
    put_half(gq, dq, shape, shape.q_heads, part, shift);
    put_half(gk, dk, shape, shape.kv_heads, part, shift);
    put_half(gv, dv, shape, shape.kv_heads, part, shift);
  }
}

}  // namespace vkt::ref
