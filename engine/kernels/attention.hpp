#pragma once
// Causal grouped-query self-attention, forward and backward, as tiled online-softmax compute
// shaders (flash-attention style): no (T, T) score matrix ever reaches global memory; the
// forward saves one logsumexp per query row and the backward recomputes the scores from it.
//
// Layout, as the q/k/v linear projections produce it (row-major):
//   q, o, dq:   (batch*seq_q,  q_heads*head_dim)  fp32; row b*seq_q + i, columns h*head_dim + d
//   k, v, dk, dv: (batch*seq_kv, kv_heads*head_dim) fp32; row b*seq_kv + j
//   lse, delta: (batch, q_heads, seq_q) fp32
// Grouped-query attention: q head h reads kv head h / (q_heads / kv_heads).
// Masks: query i sits at absolute position q_offset + i and sees keys j <= q_offset + i (and
// j < seq_kv), and with a sliding window only keys j > q_offset + i - window (as transformers'
// sliding_window masks: kv_idx > q_idx - sliding_window); with segment ids it sees only keys of
// its own segment (packed sequences). Soft-capping (Gemma 2) caps the scaled score. A row
// that sees no key at all gets o = 0 and lse = +inf (the flash-attention convention:
// exp(s - lse) = 0 in the backward, so its gradients are 0 and nothing is NaN).
// Storage: `act` (default fp32) is the type of q, k, v, o, d_o, dq, dk, dv (16-bit activations,
// engine/kernels/act_storage.hpp); lse and delta are fp32, and the online softmax and every
// product accumulate in fp32 whatever it is. A 16-bit forward never splits (no workspace).
#include <cstdint>
#include <optional>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

struct AttentionShape {
  uint32_t batch = 1;    // sequences
  uint32_t seq_q = 0;    // query tokens per sequence
  uint32_t seq_kv = 0;   // key/value tokens per sequence (KV cache: cached + new)
  uint32_t q_heads = 0;  // a multiple of kv_heads
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;  // a multiple of 4, at most 256
  uint32_t q_offset = 0;  // absolute position of query 0 (generation: tokens already cached)
  float scale = 0;        // scores are scale * q·k; usually 1/sqrt(head_dim) (Gemma: query_pre_attn_scalar^-0.5)
  uint32_t window = 0;    // sliding window: query at position P sees keys j > P - window; 0: none
  float softcap = 0;      // scores become softcap * tanh(score / softcap) before the mask; 0: none
};

// Bytes of scratch the forward uses to split long key ranges over several workgroups (decode:
// seq_q = 1, long seq_kv); 0 when the shape does not split. Depends on the shape only.
uint64_t attention_forward_workspace_bytes(const AttentionShape& shape);

// o = softmax(scale * q·kᵀ + mask) · v per head; lse = the row's logsumexp of the masked,
// scaled scores (natural log; +inf for a row that sees no key).
//   q: (batch*seq_q, q_heads*head_dim) fp32     k, v: (batch*seq_kv, kv_heads*head_dim) fp32
//   o: (batch*seq_q, q_heads*head_dim) fp32     lse: (batch, q_heads, seq_q) fp32, written
//   q_segments: (batch*seq_q) uint32 or nullptr (no segment masking)
//   kv_segments: (batch*seq_kv) uint32; nullptr: q_segments (then seq_kv must equal seq_q)
//   workspace: attention_forward_workspace_bytes(shape) bytes, or nullptr (never split)
// Every tensor must start at a 16-byte aligned address (vec4 loads).
void attention_forward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                       const BufferRange& o, const BufferRange& lse, const AttentionShape& shape,
                       const BufferRange* q_segments = nullptr, const BufferRange* kv_segments = nullptr,
                       const BufferRange* workspace = nullptr, DType act = DType::f32);

// Gradients of attention_forward for an upstream gradient d_o; dq, dk, dv are overwritten.
// Deterministic: no float atomics (dk/dv sum over the q heads of a group in a fixed order).
//   q, o, d_o: (batch*seq_q, q_heads*head_dim) fp32; o and lse as attention_forward wrote them
//   k, v: (batch*seq_kv, kv_heads*head_dim) fp32    lse: (batch, q_heads, seq_q) fp32
//   delta: (batch, q_heads, seq_q) fp32 scratch, written: rowsum(d_o ∘ o)
//   dq: like q; dk, dv: like k; segments as attention_forward
void attention_backward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                        const BufferRange& o, const BufferRange& d_o, const BufferRange& lse, const BufferRange& delta,
                        const BufferRange& dq, const BufferRange& dk, const BufferRange& dv,
                        const AttentionShape& shape, const BufferRange* q_segments = nullptr,
                        const BufferRange* kv_segments = nullptr, DType act = DType::f32);

// The three passes attention_backward records, in this order (for benchmarks, which time each
// alone; they take attention_backward's arguments).
//   delta = rowsum(d_o ∘ o)                  (written; read by the two others)
//   dk, dv from q, k, v, d_o, lse, delta     (dk, dv written)
//   dq from q, k, v, d_o, lse, delta         (dq written)
void attention_backward_delta(Recorder& recorder, const BufferRange& o, const BufferRange& d_o,
                              const BufferRange& delta, const AttentionShape& shape, DType act = DType::f32);
void attention_backward_dkdv(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                             const BufferRange& d_o, const BufferRange& lse, const BufferRange& delta,
                             const BufferRange& dk, const BufferRange& dv, const AttentionShape& shape,
                             const BufferRange* q_segments = nullptr, const BufferRange* kv_segments = nullptr,
                             DType act = DType::f32);
void attention_backward_dq(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                           const BufferRange& d_o, const BufferRange& lse, const BufferRange& delta,
                           const BufferRange& dq, const AttentionShape& shape, const BufferRange* q_segments = nullptr,
                           const BufferRange* kv_segments = nullptr, DType act = DType::f32);

// Two bodies, picked per device at the first call (like the matmul's):
// - tiled (GPUs): workgroups of 64-128 threads stage Q/K/V tiles through shared memory;
// - direct (CPU drivers such as lavapipe, with a fixed subgroup size and subgroup shuffles): one
//   subgroup per workgroup, no shared memory, head vectors split over the lanes in registers
//   (shaders/attention_direct.glsl). VKT_DISABLE_ATTENTION_DIRECT=1 forces the tiled body.
// Both keep every semantic above and are deterministic; their results differ in rounding only.
bool attention_uses_direct_body(vk::Context& context);

// Tile sizes of the tiled body as chosen from the device's shared memory (for benchmarks and tests).
struct AttentionTiles {
  uint32_t rows = 0;     // query rows per workgroup (rows of all q heads of a kv group, query-major)
  uint32_t keys = 0;     // keys per tile
  uint32_t threads = 0;  // workgroup size
};
enum class AttentionPass : uint8_t { forward, backward_dkdv, backward_dq };
AttentionTiles attention_tiles(const vk::Capabilities& caps, AttentionPass pass, const AttentionShape& shape);

// Tests only: forces tiles (rows, keys: 8, 16, 32 or 64; threads 64 or 128) so that small shapes
// cross many tile boundaries, and the forward's keys per split (a multiple of 64; 0: the usual
// choice). The direct body takes tiles.rows as its forward/dQ rows per workgroup (rounded down
// to a multiple of the subgroup size), tiles.keys as its dK/dV keys per workgroup, and
// direct_keys as the forward/dQ keys per loop iteration (at most the subgroup size; 0: the
// subgroup size). nullopt restores the automatic choice.
struct AttentionOverride {
  AttentionTiles tiles;
  uint32_t keys_per_split = 0;
  uint32_t direct_keys = 0;
};
void attention_override_for_tests(std::optional<AttentionOverride> override_value);

}  // namespace vkt::kernels

namespace vkt::ref {
// CPU references: fp64 accumulation, plain (two-pass) softmax over the visible keys. Layouts
// and masks as above. lse may be nullptr.
void attention_forward(const float* q, const float* k, const float* v, float* o, float* lse,
                       const kernels::AttentionShape& shape, const uint32_t* q_segments = nullptr,
                       const uint32_t* kv_segments = nullptr);
// Exact gradients from q, k, v and d_o alone (the softmax is recomputed; delta = rowsum(P ∘ dP)).
void attention_backward(const float* q, const float* k, const float* v, const float* d_o, float* dq, float* dk,
                        float* dv, const kernels::AttentionShape& shape, const uint32_t* q_segments = nullptr,
                        const uint32_t* kv_segments = nullptr);
}  // namespace vkt::ref
