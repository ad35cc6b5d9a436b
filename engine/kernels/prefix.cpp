#include "engine/kernels/prefix.hpp"

#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {
namespace {

struct Push {
  uint64_t a, b, c, d, e;
  uint32_t batch, seq, prefix, kv_dim, layers, layer;
};

uint64_t prefix_elements(const PrefixShape& s) { return uint64_t(s.prefix) * s.layers * 2 * s.kv_dim; }
uint64_t rows_elements(const PrefixShape& s) { return uint64_t(s.batch) * s.seq * s.kv_dim; }
uint64_t joined_elements(const PrefixShape& s) { return uint64_t(s.batch) * (s.prefix + s.seq) * s.kv_dim; }

}  // namespace

void prefix_attention_inputs(Recorder& recorder, const BufferRange& positions, const BufferRange& segments,
                             const BufferRange& positions_out, const BufferRange& kv_segments,
                             const PrefixShape& shape) {
  const uint64_t rows = uint64_t(shape.batch) * shape.seq, joined = uint64_t(shape.batch) * (shape.prefix + shape.seq);
  require_index_range(joined, "prefix_attention_inputs");
  require_bytes(positions, rows * 4, "prefix_attention_inputs", "positions");
  require_bytes(segments, rows * 4, "prefix_attention_inputs", "segments");
  require_bytes(positions_out, rows * 4, "prefix_attention_inputs", "positions_out");
  require_bytes(kv_segments, joined * 4, "prefix_attention_inputs", "kv_segments");
  struct {
    uint64_t positions, segments, positions_out, kv_segments;
    uint32_t batch, seq, prefix;
  } push{positions.address, segments.address, positions_out.address, kv_segments.address,
         shape.batch,       shape.seq,        shape.prefix};
  record_dispatch(recorder, {.shader = "prefix_attention_inputs",
                             .push = push,
                             .grid = grid_1d(joined, 256),
                             .reads = {positions, segments},
                             .writes = {positions_out, kv_segments}});
}

void prefix_kv_concat(Recorder& recorder, const BufferRange& prefix, const BufferRange& k, const BufferRange& v,
                      const BufferRange& k_out, const BufferRange& v_out, const PrefixShape& shape, uint32_t layer,
                      DType act) {
  VKT_ASSERT(layer < shape.layers, "prefix_kv_concat: layer out of range");
  require_index_range(prefix_elements(shape) + joined_elements(shape), "prefix_kv_concat");
  require_bytes(prefix, prefix_elements(shape) * 4, "prefix_kv_concat", "prefix");
  require_bytes(k, act_bytes(rows_elements(shape), act), "prefix_kv_concat", "k");
  require_bytes(v, act_bytes(rows_elements(shape), act), "prefix_kv_concat", "v");
  require_bytes(k_out, act_bytes(joined_elements(shape), act), "prefix_kv_concat", "k_out");
  require_bytes(v_out, act_bytes(joined_elements(shape), act), "prefix_kv_concat", "v_out");
  Push push{prefix.address, k.address,    v.address,    k_out.address, v_out.address, shape.batch,
            shape.seq,      shape.prefix, shape.kv_dim, shape.layers,  layer};
  record_dispatch(recorder, {.shader = act_shader(recorder, "prefix_kv_concat", act),
                             .push = push,
                             .grid = grid_1d(joined_elements(shape), 256),
                             .reads = {prefix, k, v},
                             .writes = {k_out, v_out},
                             .label = "prefix_kv_concat"});
}

void prefix_kv_concat_backward(Recorder& recorder, const BufferRange& dk_in, const BufferRange& dv_in,
                               const BufferRange& dk, const BufferRange& dv, const BufferRange& d_prefix,
                               const PrefixShape& shape, uint32_t layer, DType act) {
  VKT_ASSERT(layer < shape.layers, "prefix_kv_concat_backward: layer out of range");
  require_index_range(prefix_elements(shape) + joined_elements(shape), "prefix_kv_concat_backward");
  require_bytes(dk_in, act_bytes(joined_elements(shape), act), "prefix_kv_concat_backward", "dk_in");
  require_bytes(dv_in, act_bytes(joined_elements(shape), act), "prefix_kv_concat_backward", "dv_in");
  require_bytes(dk, act_bytes(rows_elements(shape), act), "prefix_kv_concat_backward", "dk");
  require_bytes(dv, act_bytes(rows_elements(shape), act), "prefix_kv_concat_backward", "dv");
  require_bytes(d_prefix, prefix_elements(shape) * 4, "prefix_kv_concat_backward", "d_prefix");
  Push push{dk_in.address, dv_in.address, dk.address,   dv.address, d_prefix.address, shape.batch, shape.seq,
            shape.prefix,  shape.kv_dim,  shape.layers, layer};
  const uint64_t threads = rows_elements(shape) + uint64_t(shape.prefix) * shape.kv_dim;
  record_dispatch(recorder, {.shader = act_shader(recorder, "prefix_kv_concat_backward", act),
                             .push = push,
                             .grid = grid_1d(threads, 256),
                             .reads = {dk_in, dv_in, d_prefix},
                             .writes = {dk, dv, d_prefix},
                             .label = "prefix_kv_concat_backward"});
}

}  // namespace vkt::kernels

namespace vkt::ref {

void prefix_attention_inputs(const uint32_t* positions, const uint32_t* segments, uint32_t* positions_out,
                             uint32_t* kv_segments, const kernels::PrefixShape& s) {
  const uint32_t total = s.prefix + s.seq;
  for (uint32_t b = 0; b < s.batch; b++) {
    for (uint32_t t = 0; t < s.seq; t++) positions_out[b * s.seq + t] = positions[b * s.seq + t] + s.prefix;
    for (uint32_t j = 0; j < total; j++)
      kv_segments[b * total + j] = segments[b * s.seq + (j < s.prefix ? 0 : j - s.prefix)];
  }
}

void prefix_kv_concat(const float* prefix, const float* k, const float* v, float* k_out, float* v_out,
                      const kernels::PrefixShape& s, uint32_t layer) {
  const uint64_t total = s.prefix + s.seq, width = uint64_t(s.layers) * 2 * s.kv_dim;
  for (uint64_t b = 0; b < s.batch; b++)
    for (uint64_t j = 0; j < total; j++)
      for (uint64_t c = 0; c < s.kv_dim; c++) {
        const uint64_t out = (b * total + j) * s.kv_dim + c;
        if (j < s.prefix) {
          k_out[out] = prefix[j * width + 2 * layer * s.kv_dim + c];
          v_out[out] = prefix[j * width + (2 * layer + 1) * s.kv_dim + c];
        } else {
          k_out[out] = k[(b * s.seq + j - s.prefix) * s.kv_dim + c];
          v_out[out] = v[(b * s.seq + j - s.prefix) * s.kv_dim + c];
        }
      }
}

void prefix_kv_concat_backward(const float* dk_in, const float* dv_in, float* dk, float* dv, float* d_prefix,
                               const kernels::PrefixShape& s, uint32_t layer) {
  const uint64_t total = s.prefix + s.seq, width = uint64_t(s.layers) * 2 * s.kv_dim;
  for (uint64_t b = 0; b < s.batch; b++)
    for (uint64_t t = 0; t < s.seq; t++)
      for (uint64_t c = 0; c < s.kv_dim; c++) {
        dk[(b * s.seq + t) * s.kv_dim + c] = dk_in[(b * total + s.prefix + t) * s.kv_dim + c];
        dv[(b * s.seq + t) * s.kv_dim + c] = dv_in[(b * total + s.prefix + t) * s.kv_dim + c];
      }
  for (uint64_t j = 0; j < s.prefix; j++)
    for (uint64_t c = 0; c < s.kv_dim; c++) {
      double key = 0, value = 0;
      for (uint64_t b = 0; b < s.batch; b++) {
        key += dk_in[(b * total + j) * s.kv_dim + c];
        value += dv_in[(b * total + j) * s.kv_dim + c];
      }
      d_prefix[j * width + 2 * layer * s.kv_dim + c] += static_cast<float>(key);
      d_prefix[j * width + (2 * layer + 1) * s.kv_dim + c] += static_cast<float>(value);
    }
}

}  // namespace vkt::ref
