#include "engine/kernels/s2_attention.hpp"

#include <cmath>
#include <vector>

#include "engine/base/error.hpp"
#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {

uint64_t round_up(uint64_t bytes) { return (bytes + 255) / 256 * 256; }  // keeps every slice 16-byte aligned

// The scratch slices, in order: rolled q, k, v, o, then (backward) d_o, dq, dk, dv.
struct S2Scratch {
  BufferRange q, k, v, o, d_o, dq, dk, dv;
};

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
  return s;
}

// Rolls the shifted heads of a (rows, heads*head_dim) act tensor by `shift` rows within each sequence.
void roll_heads(Recorder& recorder, const BufferRange& src, const BufferRange& dst, const AttentionShape& shape,
                uint32_t heads, int64_t shift, DType act) {
  const uint32_t row_words = static_cast<uint32_t>(act_bytes(uint64_t(heads) * shape.head_dim, act) / 4);
  const uint32_t first_word = static_cast<uint32_t>(act_bytes(uint64_t(heads / 2) * shape.head_dim, act) / 4);
  roll_rows(recorder, src, dst, shape.batch * shape.seq_q, shape.seq_q, row_words, first_word, shift);
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
  return (backward ? 2 : 1) * (2 * q_bytes + 2 * kv_bytes);
}

void roll_rows(Recorder& recorder, const BufferRange& src, const BufferRange& dst, uint32_t rows, uint32_t seq,
               uint32_t row_words, uint32_t first_word, int64_t shift) {
  if (rows == 0) return;
  VKT_ASSERT(seq > 0 && rows % seq == 0 && first_word <= row_words, "roll_rows: bad shape");
  require_index_range(uint64_t(rows) * row_words, "roll_rows");
  require_bytes(src, uint64_t(rows) * row_words * 4, "roll_rows", "src");
  require_bytes(dst, uint64_t(rows) * row_words * 4, "roll_rows", "dst");
  const uint32_t positive_shift = static_cast<uint32_t>(((shift % seq) + seq) % seq);
  struct {
    uint64_t src, dst;
    uint32_t rows, seq, row_words, first_word, shift;
  } push{src.address, dst.address, rows, seq, row_words, first_word, positive_shift};
  record_dispatch(recorder, {.shader = "roll_rows",
                             .push = push,
                             .grid = grid_1d(uint64_t(rows) * row_words, 256),
                             .reads = {src},
                             .writes = {dst}});
}

void s2_attention_forward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                          const BufferRange& o, const BufferRange& lse, const AttentionShape& shape, uint32_t group,
                          const BufferRange& scratch, DType act) {
  const std::string why = s2_attention_unsupported(shape, group);
  VKT_ASSERT(why.empty(), why);
  const S2Scratch s = carve(scratch, shape, act, false);
  const int64_t half = group / 2;
  roll_heads(recorder, q, s.q, shape, shape.q_heads, half, act);  // LongLoRA's roll(-group/2)
  roll_heads(recorder, k, s.k, shape, shape.kv_heads, half, act);
  roll_heads(recorder, v, s.v, shape, shape.kv_heads, half, act);
  attention_forward(recorder, s.q, s.k, s.v, s.o, lse, s2_group_shape(shape, group), nullptr, nullptr, nullptr, act);
  roll_heads(recorder, s.o, o, shape, shape.q_heads, -half, act);  // and back
}

void s2_attention_backward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                           const BufferRange& o, const BufferRange& d_o, const BufferRange& lse,
                           const BufferRange& delta, const BufferRange& dq, const BufferRange& dk,
                           const BufferRange& dv, const AttentionShape& shape, uint32_t group,
                           const BufferRange& scratch, DType act) {
  const std::string why = s2_attention_unsupported(shape, group);
  VKT_ASSERT(why.empty(), why);
  const S2Scratch s = carve(scratch, shape, act, true);
  const int64_t half = group / 2;
  roll_heads(recorder, q, s.q, shape, shape.q_heads, half, act);
  roll_heads(recorder, k, s.k, shape, shape.kv_heads, half, act);
  roll_heads(recorder, v, s.v, shape, shape.kv_heads, half, act);
  roll_heads(recorder, o, s.o, shape, shape.q_heads, half, act);
  roll_heads(recorder, d_o, s.d_o, shape, shape.q_heads, half, act);
  attention_backward(recorder, s.q, s.k, s.v, s.o, s.d_o, lse, delta, s.dq, s.dk, s.dv, s2_group_shape(shape, group),
                     nullptr, nullptr, act);
  // A roll is a permutation: its gradient is the inverse roll.
  roll_heads(recorder, s.dq, dq, shape, shape.q_heads, -half, act);
  roll_heads(recorder, s.dk, dk, shape, shape.kv_heads, -half, act);
  roll_heads(recorder, s.dv, dv, shape, shape.kv_heads, -half, act);
}

}  // namespace vkt::kernels

namespace vkt::ref {

namespace {

// The rolled copy of a (batch*seq, heads*head_dim) tensor: its last heads/2 heads rolled by shift.
std::vector<float> roll_heads(const float* x, const kernels::AttentionShape& shape, uint32_t heads, int64_t shift) {
  const uint32_t seq = shape.seq_q, width = heads * shape.head_dim, first = heads / 2 * shape.head_dim;
  std::vector<float> out(size_t(shape.batch) * seq * width);
  for (uint32_t b = 0; b < shape.batch; b++)
    for (uint32_t i = 0; i < seq; i++) {
      const uint32_t source = static_cast<uint32_t>(((int64_t(i) + shift) % seq + seq) % seq);
      for (uint32_t c = 0; c < width; c++)
        out[(size_t(b) * seq + i) * width + c] = x[(size_t(b) * seq + (c < first ? i : source)) * width + c];
    }
  return out;
}

}  // namespace

void s2_attention_forward(const float* q, const float* k, const float* v, float* o,
                          const kernels::AttentionShape& shape, uint32_t group) {
  const uint32_t seq = shape.seq_q, heads = shape.q_heads, hd = shape.head_dim, half = group / 2;
  const uint32_t per_kv = heads / shape.kv_heads;
  std::vector<double> scores(group);
  for (uint32_t b = 0; b < shape.batch; b++)
    for (uint32_t h = 0; h < heads; h++) {
      const bool shifted = h >= heads / 2;
      const uint32_t kvh = h / per_kv;
      for (uint32_t i = 0; i < seq; i++) {
        // Query i's index in its head's (rolled) sequence, its group, and the keys it sees there.
        const uint32_t r = shifted ? (i + seq - half) % seq : i;
        const uint32_t first = r / group * group;
        auto key_of = [&](uint32_t rolled) { return shifted ? (rolled + half) % seq : rolled; };
        const float* qi = q + (size_t(b) * seq + i) * heads * hd + h * hd;
        double max_score = -INFINITY;
        for (uint32_t rr = first; rr <= r; rr++) {
          const float* kj = k + (size_t(b) * seq + key_of(rr)) * shape.kv_heads * hd + kvh * hd;
          double dot = 0;
          for (uint32_t d = 0; d < hd; d++) dot += double(qi[d]) * kj[d];
          scores[rr - first] = dot * shape.scale;
          max_score = std::max(max_score, scores[rr - first]);
        }
        double total = 0;
        for (uint32_t rr = first; rr <= r; rr++) total += std::exp(scores[rr - first] - max_score);
        float* oi = o + (size_t(b) * seq + i) * heads * hd + h * hd;
        for (uint32_t d = 0; d < hd; d++) {
          double acc = 0;
          for (uint32_t rr = first; rr <= r; rr++)
            acc += std::exp(scores[rr - first] - max_score) / total *
                   v[(size_t(b) * seq + key_of(rr)) * shape.kv_heads * hd + kvh * hd + d];
          oi[d] = static_cast<float>(acc);
        }
      }
    }
}

void s2_attention_backward(const float* q, const float* k, const float* v, const float* d_o, float* dq, float* dk,
                           float* dv, const kernels::AttentionShape& shape, uint32_t group) {
  const int64_t half = group / 2;
  const std::vector<float> rq = roll_heads(q, shape, shape.q_heads, half),
                           rk = roll_heads(k, shape, shape.kv_heads, half),
                           rv = roll_heads(v, shape, shape.kv_heads, half),
                           rd_o = roll_heads(d_o, shape, shape.q_heads, half);
  std::vector<float> rdq(rq.size()), rdk(rk.size()), rdv(rv.size());
  attention_backward(rq.data(), rk.data(), rv.data(), rd_o.data(), rdq.data(), rdk.data(), rdv.data(),
                     kernels::s2_group_shape(shape, group));
  const std::vector<float> gq = roll_heads(rdq.data(), shape, shape.q_heads, -half),
                           gk = roll_heads(rdk.data(), shape, shape.kv_heads, -half),
                           gv = roll_heads(rdv.data(), shape, shape.kv_heads, -half);
  std::copy(gq.begin(), gq.end(), dq);
  std::copy(gk.begin(), gk.end(), dk);
  std::copy(gv.begin(), gv.end(), dv);
}

}  // namespace vkt::ref
