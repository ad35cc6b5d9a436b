#pragma once
// Prefix tuning (PEFT's PrefixTuningConfig; engine/model/prefix_tuning.hpp): every layer's
// attention sees `prefix` trained key/value rows before each sequence's own, shared by the batch.
// The attention kernels then run with seq_kv = prefix + seq and q_offset = prefix over keys and
// values that these ops assemble, and the backward splits their gradients back.
//   prefix: (prefix, layers*2*kv_dim) fp32, PEFT's past_key_values layout: for layer l, the keys
//           at columns [2l*kv_dim, (2l+1)*kv_dim), the values at the next kv_dim columns
//   k, v, dk, dv: (batch*seq, kv_dim) activations (`act`)
//   k_out, v_out, dk_in, dv_in: (batch*(prefix+seq), kv_dim) activations: row b*(prefix+seq) + j
//           is the prefix's row j for j < prefix, else the sequence's row j - prefix
#include <cstdint>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

struct PrefixShape {
  uint32_t batch = 1, seq = 0, prefix = 0, kv_dim = 0, layers = 0;
};

// positions_out = positions + prefix (the sequence's tokens come after the prefix, as transformers
// numbers them after a cache of that length); kv_segments: each key's segment, the prefix's rows
// taking their row's first segment (seen by every query of an unpacked row).
//   positions, segments, positions_out: (batch*seq) uint32; kv_segments: (batch*(prefix+seq)) uint32
void prefix_attention_inputs(Recorder& recorder, const BufferRange& positions, const BufferRange& segments,
                             const BufferRange& positions_out, const BufferRange& kv_segments,
                             const PrefixShape& shape);
// k_out, v_out = layer `layer`'s prefix rows, then k, v, for every sequence (written).
void prefix_kv_concat(Recorder& recorder, const BufferRange& prefix, const BufferRange& k, const BufferRange& v,
                      const BufferRange& k_out, const BufferRange& v_out, const PrefixShape& shape, uint32_t layer,
                      DType act = DType::f32);
// Its gradients: dk, dv = the sequences' rows of dk_in, dv_in (written); d_prefix's layer-`layer`
// columns += the prefix rows of dk_in, dv_in summed over the batch.
void prefix_kv_concat_backward(Recorder& recorder, const BufferRange& dk_in, const BufferRange& dv_in,
                               const BufferRange& dk, const BufferRange& dv, const BufferRange& d_prefix,
                               const PrefixShape& shape, uint32_t layer, DType act = DType::f32);

}  // namespace vkt::kernels

namespace vkt::ref {
void prefix_attention_inputs(const uint32_t* positions, const uint32_t* segments, uint32_t* positions_out,
                             uint32_t* kv_segments, const kernels::PrefixShape& shape);
void prefix_kv_concat(const float* prefix, const float* k, const float* v, float* k_out, float* v_out,
                      const kernels::PrefixShape& shape, uint32_t layer);
void prefix_kv_concat_backward(const float* dk_in, const float* dv_in, float* dk, float* dv, float* d_prefix,
                               const kernels::PrefixShape& shape, uint32_t layer);
}  // namespace vkt::ref
