#pragma once
// Token embedding lookup and its backward pass.
#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

// out[t, :] = table[ids[t], :].
// ids: (tokens) uint32; table: (vocab, hidden) stored as table_type (fp32, fp16, bf16 bits);
// out: (tokens, hidden) stored as out_type (engine/kernels/act_storage.hpp). An id >= vocab yields a row of zeros (never an out-of-bounds read);
// the data pipeline is expected to reject such ids before they get here.
void embedding(Recorder& recorder, const BufferRange& ids, const BufferRange& table, DType table_type,
               const BufferRange& out, uint32_t tokens, uint32_t vocab, uint32_t hidden, DType out_type = DType::f32);

// Tokens handled by one pass of embedding_backward: each pass's loops stay below 65535
// iterations per invocation, which lavapipe (Mesa 22.3) silently enforces (its loop limiter
// counts every loop iteration of an invocation and exits the loops after 65535).
constexpr uint32_t embedding_backward_tokens_per_pass = 32768;

// Workspace bytes embedding_backward needs: counts (vocab + 1) uint32 and sorted token
// positions (min(tokens, tokens_per_pass)) uint32.
uint64_t embedding_backward_workspace_bytes(uint32_t tokens, uint32_t vocab);

// d_table[v, :] += sum of d_out[t, :] over the tokens t with ids[t] == v, ADDED to d_table
// (gradients accumulate over micro-batches; clear it before the first).
// Deterministic: token positions are counting-sorted by id (stable) on the device and each id's
// rows are added in token order by one workgroup per (id, 256 columns); no float atomics. More
// than embedding_backward_tokens_per_pass tokens go in passes, each adding its own sums in turn.
// Tokens with id >= vocab contribute nothing.
// ids: (tokens) uint32; d_out: (tokens, hidden) d_out_type (an activation gradient); d_table: (vocab, hidden) fp32;
// workspace: embedding_backward_workspace_bytes(tokens, vocab) bytes.
// Per pass: count, scan, sort (a single workgroup, O(tokens * 256) comparisons), add.
void embedding_backward(Recorder& recorder, const BufferRange& ids, const BufferRange& d_out,
                        const BufferRange& d_table, const BufferRange& workspace, uint32_t tokens, uint32_t vocab,
                        uint32_t hidden, DType d_out_type = DType::f32);

// PEFT's trainable tokens (a few embedding rows trained, the rest frozen) in three small ops.
// table[indices[i], :] = rows[i, :], converted to table_type; indices >= vocab are skipped.
// rows: (count, hidden) fp32; indices: (count) uint32; table: (vocab, hidden) fp32/fp16/bf16 bits.
void scatter_rows(Recorder& recorder, const BufferRange& rows, const BufferRange& indices, const BufferRange& table,
                  DType table_type, uint32_t count, uint32_t vocab, uint32_t hidden);
// slots[t] = the i with indices[i] == ids[t], or count when ids[t] is not in indices (the ids
// embedding_backward then sums over a (count, hidden) table; it skips `count`).
// ids: (tokens) uint32; indices: (count) uint32, distinct; slots: (tokens) uint32.
void token_slots(Recorder& recorder, const BufferRange& ids, const BufferRange& indices, const BufferRange& slots,
                 uint32_t tokens, uint32_t count);
// out[r, i] = x[r, indices[i]] (0 for indices >= cols).
// x: (rows, cols) fp32; indices: (count) uint32; out: (rows, count) fp32.
void gather_columns(Recorder& recorder, const BufferRange& x, const BufferRange& indices, const BufferRange& out,
                    uint32_t rows, uint32_t cols, uint32_t count);

}  // namespace vkt::kernels

namespace vkt::ref {
// table: (vocab, hidden) fp32.
void scatter_rows(const float* rows, const uint32_t* indices, float* table, uint32_t count, uint32_t vocab,
                  uint32_t hidden);
void token_slots(const uint32_t* ids, const uint32_t* indices, uint32_t* slots, uint32_t tokens, uint32_t count);
void gather_columns(const float* x, const uint32_t* indices, float* out, uint32_t rows, uint32_t cols, uint32_t count);
// table: (vocab, hidden) fp32 (tests dequantize fp16/bf16 tables first).
void embedding(const uint32_t* ids, const float* table, float* out, uint32_t tokens, uint32_t vocab, uint32_t hidden);
// Adds into d_table; sums in double.
void embedding_backward(const uint32_t* ids, const float* d_out, float* d_table, uint32_t tokens, uint32_t vocab,
                        uint32_t hidden);
}  // namespace vkt::ref
