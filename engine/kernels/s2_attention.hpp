#pragma once
// LongLoRA's shifted sparse attention (S2-Attn, dvlab-research/LongLoRA llama_attn_replace.py,
// forward_noflashattn), for training at long lengths: each sequence of seq tokens is cut into
// groups of `group` tokens that attend causally only within their group; the last half of the
// heads (q heads [H/2, H), kv heads [KV/2, KV)) is first rolled by -group/2 along the sequence
// (after RoPE), so their groups straddle the others' boundaries, and their output is rolled back.
// As in LongLoRA's roll, the shifted heads' last group wraps: it holds the sequence's last
// group/2 tokens followed by its first group/2 tokens (which then see those last tokens).
// Implemented as rolls into scratch plus attention_forward/backward over batch*seq/group
// sequences of `group` tokens: the attention's cost falls by seq/group. The scratch holds the two
// halves of the heads as separate tensors (the shifted one rolled), attended as 2*batch*seq/group
// sequences of half the heads, so each half has its own segment ids: with `segments` (the batch's,
// padding a segment of its own) a query sees only keys of its own segment, also in the wrapped group
// (LongLoRA's flash-attention path masks padding so; its non-flash reference does not).
// Layouts as attention.hpp with seq_q = seq_kv = seq, q_offset = 0.
#include <cstdint>
#include <string>

#include "engine/kernels/attention.hpp"

namespace vkt::kernels {

// Empty when (shape, group) suits S2 attention, else why not: group even, seq a multiple of
// group, even q and kv head counts (a kv head must serve only shifted or only unshifted q heads),
// q_offset 0 and seq_q = seq_kv.
std::string s2_attention_unsupported(const AttentionShape& shape, uint32_t group);

// The attention the kernels run: batch*seq/group sequences of group tokens.
AttentionShape s2_group_shape(const AttentionShape& shape, uint32_t group);

// Scratch bytes for rows = batch*seq: rolled q, k, v, o (forward) and also d_o, dq, dk, dv (backward),
// and both halves' segment ids (2*rows uint32).
uint64_t s2_attention_scratch_bytes(uint64_t rows, uint64_t q_heads, uint64_t kv_heads, uint64_t head_dim, DType act,
                                    bool backward);

// dst[b, i, w] = src[b, (i + shift) mod seq, w] for the 32-bit words w >= first_word of each row,
// src[b, i, w] for the others (a plain copy). dst must not overlap src.
//   src, dst: (rows, row_words) 32-bit words, rows a multiple of seq
void roll_rows(Recorder& recorder, const BufferRange& src, const BufferRange& dst, uint32_t rows, uint32_t seq,
               uint32_t row_words, uint32_t first_word, int64_t shift);

// o = S2 attention of q, k, v; lse: (2*batch*seq/group, q_heads/2, group) fp32 (the grouped
// attention's over the split halves, in rolled order: only s2_attention_backward reads it).
//   q, o: (batch*seq, q_heads*head_dim) act   k, v: (batch*seq, kv_heads*head_dim) act
//   scratch: s2_attention_scratch_bytes(..., act, false) bytes
//   segments: (batch*seq) uint32 per token (attention.hpp's q_segments), or nullptr: no masking
void s2_attention_forward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                          const BufferRange& o, const BufferRange& lse, const AttentionShape& shape, uint32_t group,
                          const BufferRange& scratch, DType act = DType::f32, const BufferRange* segments = nullptr);

// Gradients of s2_attention_forward for d_o; dq, dk, dv overwritten; delta as lse (scratch).
//   scratch: s2_attention_scratch_bytes(..., act, true) bytes
void s2_attention_backward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                           const BufferRange& o, const BufferRange& d_o, const BufferRange& lse,
                           const BufferRange& delta, const BufferRange& dq, const BufferRange& dk,
                           const BufferRange& dv, const AttentionShape& shape, uint32_t group,
                           const BufferRange& scratch, DType act = DType::f32, const BufferRange* segments = nullptr);

}  // namespace vkt::kernels

namespace vkt::ref {
// fp64 reference written from the definition (which keys each head's query sees), not from
// rolls: o as kernels::s2_attention_forward (lse not produced); segments (batch*seq) or nullptr.
void s2_attention_forward(const float* q, const float* k, const float* v, float* o,
                          const kernels::AttentionShape& shape, uint32_t group, const uint32_t* segments = nullptr);
// Exact gradients (each half of the heads, rolled, through ref::attention_backward over the groups).
void s2_attention_backward(const float* q, const float* k, const float* v, const float* d_o, float* dq, float* dk,
                           float* dv, const kernels::AttentionShape& shape, uint32_t group,
                           const uint32_t* segments = nullptr);
}  // namespace vkt::ref
