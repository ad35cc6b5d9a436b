#include "engine/kernels/embedding.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"

namespace vkt::kernels {

namespace {
// The variant of `base` for a table stored as `table_type` (fp16/bf16 need 16-bit storage).
std::string table_shader(Recorder& recorder, const char* base, DType table_type) {
  if (table_type == DType::f32) return base;
  if (!recorder.context().caps().storage_16bit)
    throw UserError("device " + recorder.context().caps().name + " cannot read 16-bit buffers",
                    "store the embedding table as fp32 (it is converted when the model loads)");
  return std::string(base) + (table_type == DType::f16 ? "_f16" : "_bf16");
}
}  // namespace

void embedding(Recorder& recorder, const BufferRange& ids, const BufferRange& table, DType table_type,
               const BufferRange& out, uint32_t tokens, uint32_t vocab, uint32_t hidden, DType out_type) {
  require_index_range(uint64_t(tokens) * hidden, "embedding");
  require_index_range(uint64_t(vocab) * hidden, "embedding");
  require_bytes(ids, uint64_t(tokens) * 4, "embedding", "ids");
  require_bytes(table, uint64_t(vocab) * hidden * dtype_bytes(table_type), "embedding", "table");
  require_bytes(out, act_bytes(uint64_t(tokens) * hidden, out_type), "embedding", "out");
  std::string shader = table_shader(recorder, "embedding", table_type);
  if (out_type != DType::f32) shader = act_shader(recorder, shader + "_act", out_type);
  struct {
    uint64_t ids, table, out;
    uint32_t tokens, vocab, hidden;
  } push{ids.address, table.address, out.address, tokens, vocab, hidden};
  record_dispatch(recorder, {.shader = shader,
                             .push = push,
                             .grid = grid_1d(uint64_t(tokens) * hidden, 256),
                             .reads = {ids, table},
                             .writes = {out},
                             .label = "embedding"});
}

namespace {
VkDeviceSize sorted_offset(uint32_t vocab) { return align_up((uint64_t(vocab) + 1) * 4, 256); }
}  // namespace

uint64_t embedding_backward_workspace_bytes(uint32_t tokens, uint32_t vocab) {
  return sorted_offset(vocab) + uint64_t(std::min(tokens, embedding_backward_tokens_per_pass)) * 4;
}

void embedding_backward(Recorder& recorder, const BufferRange& ids, const BufferRange& d_out,
                        const BufferRange& d_table, const BufferRange& workspace, uint32_t tokens, uint32_t vocab,
                        uint32_t hidden, DType d_out_type) {
  if (tokens == 0 || hidden == 0) return;
  require_index_range(uint64_t(tokens) * hidden, "embedding_backward");
  require_index_range(uint64_t(vocab) * hidden, "embedding_backward");
  require_bytes(ids, uint64_t(tokens) * 4, "embedding_backward", "ids");
  require_bytes(d_out, act_bytes(uint64_t(tokens) * hidden, d_out_type), "embedding_backward", "d_out");
  require_bytes(d_table, uint64_t(vocab) * hidden * 4, "embedding_backward", "d_table");
  require_bytes(workspace, embedding_backward_workspace_bytes(tokens, vocab), "embedding_backward", "workspace");
  BufferRange counts = slice(workspace, 0, (uint64_t(vocab) + 1) * 4);
  for (uint32_t first = 0; first < tokens; first += embedding_backward_tokens_per_pass) {
    uint32_t count = std::min(tokens - first, embedding_backward_tokens_per_pass);
    BufferRange pass_ids = slice(ids, uint64_t(first) * 4, uint64_t(count) * 4);
    uint64_t row_bytes = act_bytes(hidden, d_out_type);
    BufferRange pass_d_out = slice(d_out, first * row_bytes, count * row_bytes);
    BufferRange sorted = slice(workspace, sorted_offset(vocab), uint64_t(count) * 4);

    recorder.fill(counts, 0);
    struct {
      uint64_t ids, counts;
      uint32_t tokens, vocab;
    } count_push{pass_ids.address, counts.address, count, vocab};
    record_dispatch(recorder, {.shader = "embedding_backward_count",
                               .push = count_push,
                               .grid = grid_1d(count, 256),
                               .reads = {pass_ids, counts},
                               .writes = {counts}});

    struct {
      uint64_t counts;
      uint32_t vocab;
    } scan_push{counts.address, vocab};
    record_dispatch(recorder, {.shader = "embedding_backward_scan",
                               .push = scan_push,
                               .grid = {1, 1, 1},
                               .reads = {counts},
                               .writes = {counts}});

    struct {
      uint64_t ids, counts, sorted;
      uint32_t tokens, vocab;
    } sort_push{pass_ids.address, counts.address, sorted.address, count, vocab};
    record_dispatch(recorder, {.shader = "embedding_backward_sort",
                               .push = sort_push,
                               .grid = {1, 1, 1},
                               .reads = {pass_ids, counts},
                               .writes = {counts, sorted}});

    struct {
      uint64_t ids, sorted, counts, d_out, d_table;
      uint32_t tokens, vocab, hidden;
    } add_push{pass_ids.address, sorted.address, counts.address, pass_d_out.address,
               d_table.address,  count,          vocab,          hidden};
    Grid slot_grid = grid_1d(count, 1);  // one workgroup per sorted slot (most exit at once)
    slot_grid.z = ceil_div(hidden, 256);
    record_dispatch(recorder, {.shader = act_shader(recorder, "embedding_backward", d_out_type),
                               .push = add_push,
                               .grid = slot_grid,
                               .reads = {pass_ids, sorted, counts, pass_d_out, d_table},
                               .writes = {d_table},
                               .label = "embedding_backward"});
  }
}

void scatter_rows(Recorder& recorder, const BufferRange& rows, const BufferRange& indices, const BufferRange& table,
                  DType table_type, uint32_t count, uint32_t vocab, uint32_t hidden) {
  if (count == 0) return;
  require_index_range(uint64_t(vocab) * hidden, "scatter_rows");
  require_bytes(rows, uint64_t(count) * hidden * 4, "scatter_rows", "rows");
  require_bytes(indices, uint64_t(count) * 4, "scatter_rows", "indices");
  require_bytes(table, uint64_t(vocab) * hidden * dtype_bytes(table_type), "scatter_rows", "table");
  const std::string shader = table_shader(recorder, "scatter_rows", table_type);
  struct {
    uint64_t rows, indices, table;
    uint32_t count, vocab, hidden;
  } push{rows.address, indices.address, table.address, count, vocab, hidden};
  record_dispatch(recorder, {.shader = shader,
                             .push = push,
                             .grid = grid_1d(uint64_t(count) * hidden, 256),
                             .reads = {rows, indices},
                             .writes = {table},
                             .label = "scatter_rows"});
}

void token_slots(Recorder& recorder, const BufferRange& ids, const BufferRange& indices, const BufferRange& slots,
                 uint32_t tokens, uint32_t count) {
  if (tokens == 0) return;
  require_bytes(ids, uint64_t(tokens) * 4, "token_slots", "ids");
  require_bytes(indices, uint64_t(count) * 4, "token_slots", "indices");
  require_bytes(slots, uint64_t(tokens) * 4, "token_slots", "slots");
  struct {
    uint64_t ids, indices, slots;
    uint32_t tokens, count;
  } push{ids.address, indices.address, slots.address, tokens, count};
  record_dispatch(recorder, {.shader = "token_slots",
                             .push = push,
                             .grid = grid_1d(tokens, 256),
                             .reads = {ids, indices},
                             .writes = {slots}});
}

void gather_columns(Recorder& recorder, const BufferRange& x, const BufferRange& indices, const BufferRange& out,
                    uint32_t rows, uint32_t cols, uint32_t count) {
  if (rows == 0 || count == 0) return;
  require_index_range(uint64_t(rows) * cols, "gather_columns");
  require_index_range(uint64_t(rows) * count, "gather_columns");
  require_bytes(x, uint64_t(rows) * cols * 4, "gather_columns", "x");
  require_bytes(indices, uint64_t(count) * 4, "gather_columns", "indices");
  require_bytes(out, uint64_t(rows) * count * 4, "gather_columns", "out");
  struct {
    uint64_t x, indices, out;
    uint32_t rows, cols, count;
  } push{x.address, indices.address, out.address, rows, cols, count};
  record_dispatch(recorder, {.shader = "gather_columns",
                             .push = push,
                             .grid = grid_1d(uint64_t(rows) * count, 256),
                             .reads = {x, indices},
                             .writes = {out}});
}

}  // namespace vkt::kernels

namespace vkt::ref {

void scatter_rows(const float* rows, const uint32_t* indices, float* table, uint32_t count, uint32_t vocab,
                  uint32_t hidden) {
  for (uint32_t i = 0; i < count; i++)
    if (indices[i] < vocab)
      for (uint32_t c = 0; c < hidden; c++) table[size_t(indices[i]) * hidden + c] = rows[size_t(i) * hidden + c];
}

void token_slots(const uint32_t* ids, const uint32_t* indices, uint32_t* slots, uint32_t tokens, uint32_t count) {
  for (uint32_t t = 0; t < tokens; t++) {
    slots[t] = count;
    for (uint32_t i = 0; i < count; i++)
      if (indices[i] == ids[t]) {
        slots[t] = i;
        break;
      }
  }
}

void gather_columns(const float* x, const uint32_t* indices, float* out, uint32_t rows, uint32_t cols, uint32_t count) {
  for (uint32_t r = 0; r < rows; r++)
    for (uint32_t i = 0; i < count; i++)
      out[size_t(r) * count + i] = indices[i] < cols ? x[size_t(r) * cols + indices[i]] : 0.0f;
}


void embedding(const uint32_t* ids, const float* table, float* out, uint32_t tokens, uint32_t vocab, uint32_t hidden) {
  for (uint32_t t = 0; t < tokens; t++)
    for (uint32_t c = 0; c < hidden; c++)
      out[size_t(t) * hidden + c] = ids[t] < vocab ? table[size_t(ids[t]) * hidden + c] : 0.0f;
}

void embedding_backward(const uint32_t* ids, const float* d_out, float* d_table, uint32_t tokens, uint32_t vocab,
                        uint32_t hidden) {
  std::vector<double> sums(size_t(vocab) * hidden, 0.0);
  std::vector<bool> touched(vocab, false);
  for (uint32_t t = 0; t < tokens; t++) {
    if (ids[t] >= vocab) continue;
    touched[ids[t]] = true;
    for (uint32_t c = 0; c < hidden; c++) sums[size_t(ids[t]) * hidden + c] += d_out[size_t(t) * hidden + c];
  }
  for (uint32_t v = 0; v < vocab; v++)
    if (touched[v])
      for (uint32_t c = 0; c < hidden; c++)
        d_table[size_t(v) * hidden + c] =
            static_cast<float>(d_table[size_t(v) * hidden + c] + sums[size_t(v) * hidden + c]);
}

}  // namespace vkt::ref
