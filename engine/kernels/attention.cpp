#include "engine/kernels/attention.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <numbers>
#include <string>
#include <vector>

#include "engine/base/error.hpp"
#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/ranges.hpp"
#include "engine/vk/subgroup_size.hpp"

namespace vkt::kernels {
namespace {

constexpr uint32_t max_head_dim = 256;
constexpr uint32_t split_granule = 64;  // keys_per_split is a multiple of every key tile size

std::optional<AttentionOverride> forced;

bool env_set(const char* name) {
  const char* value = std::getenv(name);
  return value && *value && std::string(value) != "0";
}

uint32_t group_of(const AttentionShape& shape) { return shape.q_heads / shape.kv_heads; }
uint64_t q_elements(const AttentionShape& s) { return uint64_t(s.batch) * s.seq_q * s.q_heads * s.head_dim; }
uint64_t kv_elements(const AttentionShape& s) { return uint64_t(s.batch) * s.seq_kv * s.kv_heads * s.head_dim; }
uint64_t stat_elements(const AttentionShape& s) { return uint64_t(s.batch) * s.q_heads * s.seq_q; }

// Specialization constants of one attention pipeline (constant_id order of shaders/attention.glsl).
struct TileConfig {
  uint32_t threads = 0, rows = 0, keys = 0, score_threads_x = 0;
};

// Shared memory of a pass at these tiles, as the shaders declare it.
uint64_t shared_bytes(AttentionPass pass, uint32_t head_dim, uint32_t rows, uint32_t keys) {
  uint64_t row_bytes = (head_dim / 4 + 1) * 16ull;  // one padded head vector
  uint64_t score_tile = uint64_t(rows) * (keys + 1) * 4;
  uint64_t masks = rows * 12ull + keys * 4ull;  // row_limit, row_start, row_segment, key_segment
  switch (pass) {
    case AttentionPass::forward:
      return (rows + keys) * row_bytes + score_tile + masks + rows * 12ull;
    case AttentionPass::backward_dkdv:
      return (2ull * keys + rows) * row_bytes + 2 * score_tile + masks + rows * 8ull;
    case AttentionPass::backward_dq:
      return (2ull * rows + keys) * row_bytes + score_tile + masks + rows * 8ull;
  }
  return ~0ull;
}

// Threads along keys in the score micro-tile: the most square per-thread block (fewest shared
// loads per multiply-add); 0 when the tile has fewer entries than the workgroup has threads.
uint32_t score_threads_x(uint32_t threads, uint32_t rows, uint32_t keys) {
  uint32_t best = 0, best_imbalance = ~0u;
  for (uint32_t tx = 1; tx <= keys && tx <= threads; tx *= 2) {
    uint32_t ty = threads / tx;
    if (ty > rows) continue;
    uint32_t per_row = rows / ty, per_key = keys / tx;
    uint32_t imbalance = per_row > per_key ? per_row - per_key : per_key - per_row;
    if (imbalance <= best_imbalance) best = tx, best_imbalance = imbalance;
  }
  return best;
}

// Keeps the per-thread arrays small enough to live in registers.
bool registers_fit(AttentionPass pass, uint32_t head_dim, uint32_t threads, uint32_t rows, uint32_t keys) {
  uint32_t lines = threads / (head_dim / 4);
  if (lines == 0) return false;
  uint32_t row_passes = (rows + lines - 1) / lines, key_passes = (keys + lines - 1) / lines;
  uint32_t micro_tile = rows * keys / threads;
  switch (pass) {
    case AttentionPass::forward:
      return row_passes <= 16 && micro_tile <= 32;
    case AttentionPass::backward_dkdv:
      return 2 * key_passes <= 16 && 2 * micro_tile <= 32;
    case AttentionPass::backward_dq:
      return row_passes <= 16 && 2 * micro_tile <= 32;
  }
  return false;
}

bool tiles_valid(AttentionPass pass, uint32_t head_dim, uint32_t shared_limit, TileConfig& tiles) {
  if (tiles.threads == 0 || tiles.rows == 0 || tiles.keys == 0) return false;
  tiles.score_threads_x = score_threads_x(tiles.threads, tiles.rows, tiles.keys);
  return tiles.score_threads_x != 0 && shared_bytes(pass, head_dim, tiles.rows, tiles.keys) <= shared_limit &&
         registers_fit(pass, head_dim, tiles.threads, tiles.rows, tiles.keys);
}

// Larger tiles do more work per barrier and per global load; the tile along the dimension that
// spreads over workgroups (rows for forward and dQ, keys for dK/dV) is capped for tiny extents so
// that a decode step (a few rows) does not pad its tile to 64 rows.
TileConfig choose_tiles(const vk::Capabilities& caps, AttentionPass pass, const AttentionShape& shape) {
  // A little below the limit: some drivers place a few bytes of their own in shared memory.
  uint32_t shared_limit = caps.max_shared_memory > 1024 ? caps.max_shared_memory - 1024 : 0;
  if (forced) {
    TileConfig tiles{forced->tiles.threads, forced->tiles.rows, forced->tiles.keys, 0};
    VKT_ASSERT(tiles_valid(pass, shape.head_dim, shared_limit, tiles),
               "attention: forced tiles do not fit this head_dim / device");
    return tiles;
  }
  // Only a shape with a handful of rows (decode) or keys gets smaller tiles; others share one
  // pipeline per head_dim whatever their length.
  uint64_t row_count = uint64_t(group_of(shape)) * shape.seq_q;
  uint32_t row_cap = row_count <= 8 ? 8 : 64;
  uint32_t key_cap = shape.seq_kv <= 8 ? 8 : 64;
  bool rows_spread = pass != AttentionPass::backward_dkdv;
  TileConfig best;
  for (uint32_t threads : {128u, 64u}) {
    for (uint32_t rows = 8; rows <= 64; rows *= 2) {
      for (uint32_t keys = 8; keys <= 64; keys *= 2) {
        if ((rows_spread && rows > row_cap) || (!rows_spread && keys > key_cap)) continue;
        TileConfig tiles{threads, rows, keys, 0};
        if (!tiles_valid(pass, shape.head_dim, shared_limit, tiles)) continue;
        auto rank = [&](const TileConfig& c) {
          return std::array<uint32_t, 2>{c.rows * c.keys, rows_spread ? c.rows : c.keys};
        };
        if (best.threads == 0 || rank(tiles) > rank(best)) best = tiles;
      }
    }
    if (best.threads != 0) break;  // 64 threads only when 128 fit nothing
  }
  if (best.threads == 0)
    throw UserError("attention: head_dim " + std::to_string(shape.head_dim) + " needs more than the " +
                        std::to_string(shared_limit) + " bytes of shared memory this device has",
                    "use a model with a smaller head_dim, or another device");
  return best;
}

std::array<uint32_t, 5> specialization(const TileConfig& tiles, uint32_t head_dim) {
  return {tiles.threads, head_dim, tiles.rows, tiles.keys, tiles.score_threads_x};
}

// How the forward splits the keys over workgroups. A shape with few rows per (sequence, kv head)
// and many keys (decode) would otherwise run a handful of workgroups, each walking every key.
struct SplitPlan {
  uint32_t splits = 1;
  uint32_t keys_per_split = 0;
};

SplitPlan unsplit(const AttentionShape& shape) {
  return {1, static_cast<uint32_t>((uint64_t(shape.seq_kv) + split_granule - 1) / split_granule * split_granule)};
}

SplitPlan forward_split(const AttentionShape& shape) {
  SplitPlan plan = unsplit(shape);
  uint64_t visible = std::min<uint64_t>(shape.seq_kv, uint64_t(shape.q_offset) + shape.seq_q);
  if (env_set("VKT_DISABLE_ATTENTION_SPLIT")) return plan;
  uint32_t keys_per_split = 0;
  if (forced && forced->keys_per_split) {
    keys_per_split = forced->keys_per_split;
  } else {
    constexpr uint64_t target_workgroups = 128, min_keys_per_split = 256;
    uint64_t rows = uint64_t(group_of(shape)) * shape.seq_q;
    uint64_t workgroups = uint64_t(shape.batch) * shape.kv_heads;
    if (rows > 64 || workgroups >= target_workgroups || visible < 2 * min_keys_per_split) return plan;
    uint64_t splits = std::min((target_workgroups + workgroups - 1) / workgroups, visible / min_keys_per_split);
    keys_per_split = static_cast<uint32_t>((visible + splits - 1) / splits);
  }
  keys_per_split = (keys_per_split + split_granule - 1) / split_granule * split_granule;
  uint32_t splits = static_cast<uint32_t>((visible + keys_per_split - 1) / keys_per_split);
  if (splits > 1) plan = {splits, keys_per_split};
  return plan;
}

void check_range(const BufferRange& range, uint64_t bytes, const char* op, const char* tensor) {
  require_bytes(range, bytes, op, tensor);
  VKT_ASSERT(range.address % 16 == 0, std::string(op) + ": " + tensor + " is not 16-byte aligned");
}

void check_shape(const AttentionShape& s) {
  VKT_ASSERT(s.batch > 0 && s.seq_q > 0 && s.seq_kv > 0, "attention: empty shape");
  VKT_ASSERT(s.kv_heads > 0 && s.q_heads % s.kv_heads == 0, "attention: q_heads must be a multiple of kv_heads");
  VKT_ASSERT(s.head_dim > 0 && s.head_dim % 4 == 0 && s.head_dim <= max_head_dim,
             "attention: head_dim must be a multiple of 4, at most 256");
  VKT_ASSERT(s.batch <= 65535 && s.kv_heads <= 65535, "attention: too many sequences or heads for one dispatch");
  VKT_ASSERT(s.scale > 0 && std::isfinite(s.scale), "attention: set shape.scale (usually 1/sqrt(head_dim))");
  VKT_ASSERT(s.softcap >= 0 && std::isfinite(s.softcap), "attention: softcap must be >= 0 (0: none)");
}

// The direct bodies (shaders/attention_direct.glsl) want a CPU driver, where every load is one
// scalar access per lane, and a fixed subgroup size: a workgroup is exactly one subgroup.
uint32_t direct_subgroup_size(vk::Context& context) {
  const vk::Capabilities& caps = context.caps();
  bool direct = caps.device_type == VK_PHYSICAL_DEVICE_TYPE_CPU && caps.subgroup_size >= 4 &&
                caps.subgroup_size <= 64 && caps.min_subgroup_size == caps.max_subgroup_size && caps.subgroup_shuffle &&
                !env_set("VKT_DISABLE_ATTENTION_DIRECT");
  return direct ? caps.subgroup_size : 0;
}

// Work of one workgroup of the direct bodies. The shaders keep everything in registers and
// unroll their inner loops, so their size, and llvmpipe's compile time (which grows faster than
// it), scale with block * keys * head_dim (forward, dQ) or block * head_dim (dK/dV).
struct DirectConfig {
  uint32_t block = 0;  // forward, dQ: query rows (a multiple of the subgroup size); dK/dV: keys
  uint32_t keys = 0;   // forward, dQ: keys per loop iteration (at most the subgroup size)
};

// More rows (keys) per workgroup share each load of a key (row). Measured on lavapipe, head_dim
// 64 and 128: forward and dQ gain up to 32 rows (16 -> 32: -20..30% time; 64: no gain), dK/dV up
// to 16 keys (8 -> 16: -25..40%; 32: within noise). Keys per iteration matter less (forward
// 8 -> 4: +10%), so they give way first to keep the shaders' size, and compile time, bounded.
DirectConfig direct_config(uint32_t subgroup, AttentionPass pass, const AttentionShape& shape) {
  uint64_t rows = uint64_t(group_of(shape)) * shape.seq_q;
  uint32_t slots = (shape.head_dim / 2 + subgroup - 1) / subgroup;  // 64-bit words per lane and head vector
  // lavapipe runs one workgroup per thread: a small problem takes smaller blocks, so that a
  // many-core CPU gets work on every core (and the shader compiles faster).
  constexpr uint64_t min_workgroups = 16;
  uint64_t sequences_heads = uint64_t(shape.batch) * shape.kv_heads;
  DirectConfig config{subgroup, subgroup};
  if (forced) {
    config.block = pass == AttentionPass::backward_dkdv ? forced->tiles.keys
                                                        : std::max(subgroup, forced->tiles.rows / subgroup * subgroup);
    if (forced->direct_keys) config.keys = std::min(forced->direct_keys, subgroup);
  } else if (pass == AttentionPass::backward_dkdv) {
    config.block = slots <= 8 ? 2 * subgroup : subgroup;
    while (config.block > 4 && ceil_div(shape.seq_kv, config.block) * sequences_heads < min_workgroups)
      config.block /= 2;
    while (config.block > 1 && config.block / 2 >= shape.seq_kv) config.block /= 2;
  } else {
    config.block = slots <= 8 ? 4 * subgroup : 2 * subgroup;
    while (config.block > subgroup && ceil_div(rows, config.block) * sequences_heads < min_workgroups)
      config.block /= 2;
    // Unrolled multiply-adds per lane and iteration (times two head vectors in the forward, three
    // in dQ): 1024 for the forward, 512 for dQ.
    uint32_t budget = (pass == AttentionPass::forward ? 128 : 64) * subgroup;
    config.keys = std::clamp(budget / (config.block * slots), 1u, subgroup);
  }
  // llvmpipe silently leaves a shader's loops after ~65535 iterations in all: the direct bodies
  // walk keys (forward, dQ: `keys` per iteration) or rows (dK/dV: a subgroup's worth).
  uint64_t walk = pass == AttentionPass::backward_dkdv ? (rows + subgroup - 1) / subgroup
                                                       : (shape.seq_kv + config.keys - 1) / config.keys;
  if (walk > 60000)
    throw UserError("attention: sequence too long for the CPU-driver attention shaders (" + std::to_string(walk) +
                        " loop iterations; llvmpipe stops a shader after 65535)",
                    "use shorter sequences, or set VKT_DISABLE_ATTENTION_DIRECT=1");
  return config;
}

// 64-bit words per load in the direct shaders: 4 or 2 when they split the head vector
// (head_dim / 2 words) and each lane's share of it evenly and every head tensor is aligned to
// them, else 1. llvmpipe emits a loop over the lanes for every load; fewer, wider loads make
// the shaders compile ~20% faster (and run a few % faster).
uint32_t direct_words(uint32_t subgroup, uint32_t head_dim, std::initializer_list<BufferRange> tensors) {
  uint32_t pairs = head_dim / 2, slots = (pairs + subgroup - 1) / subgroup;
  for (uint32_t words : {4u, 2u}) {
    bool aligned = true;
    for (const BufferRange& tensor : tensors) aligned = aligned && tensor.address % (8 * words) == 0;
    if (slots % words == 0 && pairs % words == 0 && aligned) return words;
  }
  return 1;
}

// The segment buffers the shaders read: (q, kv) addresses, or (0, 0) without segments.
std::pair<uint64_t, uint64_t> segment_addresses(const AttentionShape& s, const BufferRange* q_segments,
                                                const BufferRange* kv_segments, std::vector<BufferRange>& reads) {
  VKT_ASSERT(q_segments || !kv_segments, "attention: kv_segments without q_segments");
  if (!q_segments) return {0, 0};
  VKT_ASSERT(kv_segments || s.seq_kv == s.seq_q, "attention: kv_segments are needed when seq_kv != seq_q");
  const BufferRange& kv = kv_segments ? *kv_segments : *q_segments;
  require_bytes(*q_segments, uint64_t(s.batch) * s.seq_q * 4, "attention", "q_segments");
  require_bytes(kv, uint64_t(s.batch) * s.seq_kv * 4, "attention", "kv_segments");
  reads.push_back(*q_segments);
  if (kv_segments) reads.push_back(*kv_segments);
  return {q_segments->address, kv.address};
}

float log2_scale(const AttentionShape& s) { return static_cast<float>(s.scale * std::numbers::log2e); }
// The soft cap in base-2 score units (the shaders' scores are scale * log2(e) * q·k).
float log2_softcap(const AttentionShape& s) { return static_cast<float>(s.softcap * std::numbers::log2e); }

// The shape and the q, k, v every attention pass reads.
void check_inputs(const BufferRange& q, const BufferRange& k, const BufferRange& v, const AttentionShape& shape,
                  const char* op, DType act) {
  check_shape(shape);
  check_range(q, act_bytes(q_elements(shape), act), op, "q");
  check_range(k, act_bytes(kv_elements(shape), act), op, "k");
  check_range(v, act_bytes(kv_elements(shape), act), op, "v");
}

void check_backward_inputs(const BufferRange& q, const BufferRange& k, const BufferRange& v, const BufferRange& d_o,
                           const BufferRange& lse, const BufferRange& delta, const AttentionShape& shape,
                           const char* op, DType act) {
  check_inputs(q, k, v, shape, op, act);
  check_range(d_o, act_bytes(q_elements(shape), act), op, "d_o");
  check_range(lse, stat_elements(shape) * 4, op, "lse");
  check_range(delta, stat_elements(shape) * 4, op, "delta");
}

uint32_t row_tile_count(const AttentionShape& s, uint32_t rows) {
  uint32_t count = ceil_div(uint64_t(group_of(s)) * s.seq_q, rows);
  VKT_ASSERT(count <= 65535, "attention: too many query rows for one dispatch");
  return count;
}

}  // namespace

uint64_t attention_forward_workspace_bytes(const AttentionShape& shape) {
  check_shape(shape);
  SplitPlan plan = forward_split(shape);
  if (plan.splits <= 1) return 0;
  return uint64_t(plan.splits) * (q_elements(shape) + stat_elements(shape)) * 4;
}

AttentionTiles attention_tiles(const vk::Capabilities& caps, AttentionPass pass, const AttentionShape& shape) {
  TileConfig tiles = choose_tiles(caps, pass, shape);
  return {tiles.rows, tiles.keys, tiles.threads};
}

void attention_override_for_tests(std::optional<AttentionOverride> override_value) { forced = override_value; }

bool attention_uses_direct_body(vk::Context& context) { return direct_subgroup_size(context) != 0; }

void attention_forward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                       const BufferRange& o, const BufferRange& lse, const AttentionShape& shape,
                       const BufferRange* q_segments, const BufferRange* kv_segments, const BufferRange* workspace,
                       DType act) {
  check_inputs(q, k, v, shape, "attention_forward", act);
  check_range(o, act_bytes(q_elements(shape), act), "attention_forward", "o");
  check_range(lse, stat_elements(shape) * 4, "attention_forward", "lse");
  std::vector<BufferRange> reads{q, k, v};
  auto [q_segment_address, kv_segment_address] = segment_addresses(shape, q_segments, kv_segments, reads);

  SplitPlan plan = forward_split(shape);
  if (!workspace || act != DType::f32) plan = unsplit(shape);  // 16-bit: o written directly
  BufferRange partial_o = o, partial_lse = lse;
  if (plan.splits > 1) {
    check_range(*workspace, attention_forward_workspace_bytes(shape), "attention_forward", "workspace");
    uint64_t o_bytes = plan.splits * q_elements(shape) * 4;
    partial_o = {workspace->buffer, workspace->offset, o_bytes, workspace->address};
    partial_lse = {workspace->buffer, workspace->offset + o_bytes, plan.splits * stat_elements(shape) * 4,
                   workspace->address + o_bytes};
  }

  struct {
    uint64_t q, k, v, o, lse, q_segments, kv_segments;
    uint32_t batch, seq_q, seq_kv, q_heads, kv_heads, q_offset;
    float scale_log2;
    uint32_t keys_per_split, window;
    float softcap_log2;
  } push{q.address,         k.address,          v.address,      partial_o.address, partial_lse.address,
         q_segment_address, kv_segment_address, shape.batch,    shape.seq_q,       shape.seq_kv,
         shape.q_heads,     shape.kv_heads,     shape.q_offset, log2_scale(shape), plan.keys_per_split,
         shape.window,      log2_softcap(shape)};
  static_assert(sizeof(push) == 96);
  VKT_ASSERT(uint64_t(shape.batch) * plan.splits <= 65535, "attention: too many splits");
  if (uint32_t subgroup = direct_subgroup_size(recorder.context())) {
    DirectConfig config = direct_config(subgroup, AttentionPass::forward, shape);
    uint32_t words = direct_words(subgroup, shape.head_dim, {q, k, v, partial_o});
    const uint32_t constants[] = {subgroup, shape.head_dim, config.block, words, config.keys};
    record_dispatch(recorder, {.shader = vk::subgroup_sized_shader(
                                   recorder.context(), act_shader(recorder, "attention_forward_direct", act), subgroup),
                               .specialization = constants,
                               .push = push,
                               .grid = {row_tile_count(shape, config.block), shape.kv_heads, shape.batch * plan.splits},
                               .reads = reads,
                               .writes = {partial_o, partial_lse},
                               .label = "attention_forward"});
  } else {
    TileConfig tiles = choose_tiles(recorder.context().caps(), AttentionPass::forward, shape);
    record_dispatch(recorder, {.shader = act_shader(recorder, "attention_forward", act),
                               .specialization = specialization(tiles, shape.head_dim),
                               .push = push,
                               .grid = {row_tile_count(shape, tiles.rows), shape.kv_heads, shape.batch * plan.splits},
                               .reads = reads,
                               .writes = {partial_o, partial_lse},
                               .label = "attention_forward"});
  }
  if (plan.splits <= 1) return;

  struct {
    uint64_t partial_o, partial_lse, o, lse;
    uint32_t batch, seq_q, q_heads, head_vec4s, splits;
  } combine{partial_o.address, partial_lse.address, o.address,          lse.address, shape.batch,
            shape.seq_q,       shape.q_heads,       shape.head_dim / 4, plan.splits};
  record_dispatch(recorder, {.shader = "attention_forward_combine",
                             .push = combine,
                             .grid = grid_1d(q_elements(shape) / 4, 64),
                             .reads = {partial_o, partial_lse},
                             .writes = {o, lse}});
}

void attention_backward_delta(Recorder& recorder, const BufferRange& o, const BufferRange& d_o,
                              const BufferRange& delta, const AttentionShape& shape, DType act) {
  check_shape(shape);
  check_range(o, act_bytes(q_elements(shape), act), "attention_backward_delta", "o");
  check_range(d_o, act_bytes(q_elements(shape), act), "attention_backward_delta", "d_o");
  check_range(delta, stat_elements(shape) * 4, "attention_backward_delta", "delta");
  struct {
    uint64_t o, d_o, delta;
    uint32_t batch, seq_q, q_heads, head_vec4s;
  } push{o.address, d_o.address, delta.address, shape.batch, shape.seq_q, shape.q_heads, shape.head_dim / 4};
  const std::string shader = act_shader(
      recorder,
      direct_subgroup_size(recorder.context()) ? "attention_backward_delta_direct" : "attention_backward_delta", act);
  record_dispatch(recorder, {.shader = shader,
                             .push = push,
                             .grid = grid_1d(stat_elements(shape), 64),
                             .reads = {o, d_o},
                             .writes = {delta},
                             .label = "attention_backward_delta"});
}

void attention_backward_dkdv(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                             const BufferRange& d_o, const BufferRange& lse, const BufferRange& delta,
                             const BufferRange& dk, const BufferRange& dv, const AttentionShape& shape,
                             const BufferRange* q_segments, const BufferRange* kv_segments, DType act) {
  check_backward_inputs(q, k, v, d_o, lse, delta, shape, "attention_backward_dkdv", act);
  check_range(dk, act_bytes(kv_elements(shape), act), "attention_backward_dkdv", "dk");
  check_range(dv, act_bytes(kv_elements(shape), act), "attention_backward_dkdv", "dv");
  std::vector<BufferRange> reads{q, k, v, d_o, lse, delta};
  auto [q_segment_address, kv_segment_address] = segment_addresses(shape, q_segments, kv_segments, reads);
  struct {
    uint64_t q, k, v, d_o, lse, delta, dk, dv, q_segments, kv_segments;
    uint32_t batch, seq_q, seq_kv, q_heads, kv_heads, q_offset;
    float scale, scale_log2;
    uint32_t window;
    float softcap_log2;
  } push{q.address,      k.address,   v.address,         d_o.address,       lse.address,
         delta.address,  dk.address,  dv.address,        q_segment_address, kv_segment_address,
         shape.batch,    shape.seq_q, shape.seq_kv,      shape.q_heads,     shape.kv_heads,
         shape.q_offset, shape.scale, log2_scale(shape), shape.window,      log2_softcap(shape)};
  static_assert(sizeof(push) == 120);
  if (uint32_t subgroup = direct_subgroup_size(recorder.context())) {
    DirectConfig config = direct_config(subgroup, AttentionPass::backward_dkdv, shape);
    uint32_t key_tiles = ceil_div(shape.seq_kv, config.block);
    VKT_ASSERT(key_tiles <= 65535, "attention: too many keys for one dispatch");
    uint32_t words = direct_words(subgroup, shape.head_dim, {q, k, v, d_o, dk, dv});
    const uint32_t constants[] = {subgroup, shape.head_dim, config.block, words};
    record_dispatch(recorder,
                    {.shader = vk::subgroup_sized_shader(
                         recorder.context(), act_shader(recorder, "attention_backward_dkdv_direct", act), subgroup),
                     .specialization = constants,
                     .push = push,
                     .grid = {key_tiles, shape.kv_heads, shape.batch},
                     .reads = reads,
                     .writes = {dk, dv},
                     .label = "attention_backward_dkdv"});
    return;
  }
  TileConfig tiles = choose_tiles(recorder.context().caps(), AttentionPass::backward_dkdv, shape);
  uint32_t key_tiles = ceil_div(shape.seq_kv, tiles.keys);
  VKT_ASSERT(key_tiles <= 65535, "attention: too many keys for one dispatch");
  record_dispatch(recorder, {.shader = act_shader(recorder, "attention_backward_dkdv", act),
                             .specialization = specialization(tiles, shape.head_dim),
                             .push = push,
                             .grid = {key_tiles, shape.kv_heads, shape.batch},
                             .reads = reads,
                             .writes = {dk, dv},
                             .label = "attention_backward_dkdv"});
}

void attention_backward_dq(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                           const BufferRange& d_o, const BufferRange& lse, const BufferRange& delta,
                           const BufferRange& dq, const AttentionShape& shape, const BufferRange* q_segments,
                           const BufferRange* kv_segments, DType act) {
  check_backward_inputs(q, k, v, d_o, lse, delta, shape, "attention_backward_dq", act);
  check_range(dq, act_bytes(q_elements(shape), act), "attention_backward_dq", "dq");
  std::vector<BufferRange> reads{q, k, v, d_o, lse, delta};
  auto [q_segment_address, kv_segment_address] = segment_addresses(shape, q_segments, kv_segments, reads);
  struct {
    uint64_t q, k, v, d_o, lse, delta, dq, q_segments, kv_segments;
    uint32_t batch, seq_q, seq_kv, q_heads, kv_heads, q_offset;
    float scale, scale_log2;
    uint32_t window;
    float softcap_log2;
  } push{q.address,     k.address,         v.address,         d_o.address,        lse.address,
         delta.address, dq.address,        q_segment_address, kv_segment_address, shape.batch,
         shape.seq_q,   shape.seq_kv,      shape.q_heads,     shape.kv_heads,     shape.q_offset,
         shape.scale,   log2_scale(shape), shape.window,      log2_softcap(shape)};
  static_assert(sizeof(push) == 112);
  if (uint32_t subgroup = direct_subgroup_size(recorder.context())) {
    DirectConfig config = direct_config(subgroup, AttentionPass::backward_dq, shape);
    uint32_t words = direct_words(subgroup, shape.head_dim, {q, k, v, d_o, dq});
    const uint32_t constants[] = {subgroup, shape.head_dim, config.block, words, config.keys};
    record_dispatch(recorder,
                    {.shader = vk::subgroup_sized_shader(
                         recorder.context(), act_shader(recorder, "attention_backward_dq_direct", act), subgroup),
                     .specialization = constants,
                     .push = push,
                     .grid = {row_tile_count(shape, config.block), shape.kv_heads, shape.batch},
                     .reads = reads,
                     .writes = {dq},
                     .label = "attention_backward_dq"});
    return;
  }
  TileConfig tiles = choose_tiles(recorder.context().caps(), AttentionPass::backward_dq, shape);
  record_dispatch(recorder, {.shader = act_shader(recorder, "attention_backward_dq", act),
                             .specialization = specialization(tiles, shape.head_dim),
                             .push = push,
                             .grid = {row_tile_count(shape, tiles.rows), shape.kv_heads, shape.batch},
                             .reads = reads,
                             .writes = {dq},
                             .label = "attention_backward_dq"});
}

void attention_backward(Recorder& recorder, const BufferRange& q, const BufferRange& k, const BufferRange& v,
                        const BufferRange& o, const BufferRange& d_o, const BufferRange& lse, const BufferRange& delta,
                        const BufferRange& dq, const BufferRange& dk, const BufferRange& dv,
                        const AttentionShape& shape, const BufferRange* q_segments, const BufferRange* kv_segments,
                        DType act) {
  attention_backward_delta(recorder, o, d_o, delta, shape, act);
  attention_backward_dkdv(recorder, q, k, v, d_o, lse, delta, dk, dv, shape, q_segments, kv_segments, act);
  attention_backward_dq(recorder, q, k, v, d_o, lse, delta, dq, shape, q_segments, kv_segments, act);
}

}  // namespace vkt::kernels

namespace vkt::ref {
namespace {

struct Masks {
  const kernels::AttentionShape& shape;
  const uint32_t* q_segments;
  const uint32_t* kv_segments;
  bool visible(uint32_t b, uint32_t i, uint32_t j) const {
    uint64_t position = uint64_t(shape.q_offset) + i;
    if (j >= shape.seq_kv || uint64_t(j) > position) return false;
    if (shape.window != 0 && uint64_t(j) + shape.window <= position) return false;  // outside the sliding window
    if (!q_segments) return true;
    const uint32_t* keys = kv_segments ? kv_segments : q_segments;
    return q_segments[size_t(b) * shape.seq_q + i] == keys[size_t(b) * shape.seq_kv + j];
  }
};

// Softmax probabilities of query (b, i) of q head h over all keys (0 where masked), in double;
// returns false when the row sees no key. `lse` gets the row's logsumexp.
bool row_probabilities(const float* q, const float* k, const kernels::AttentionShape& s, const Masks& masks, uint32_t b,
                       uint32_t h, uint32_t i, std::vector<double>& probabilities, double& lse) {
  uint32_t kv_head = h / (s.q_heads / s.kv_heads);
  const float* q_row = q + ((size_t(b) * s.seq_q + i) * s.q_heads + h) * s.head_dim;
  probabilities.assign(s.seq_kv, 0.0);
  double largest = -INFINITY;
  for (uint32_t j = 0; j < s.seq_kv; j++) {
    if (!masks.visible(b, i, j)) continue;
    const float* k_row = k + ((size_t(b) * s.seq_kv + j) * s.kv_heads + kv_head) * s.head_dim;
    double score = 0;
    for (uint32_t d = 0; d < s.head_dim; d++) score += double(q_row[d]) * k_row[d];
    probabilities[j] = score * s.scale;
    if (s.softcap > 0) probabilities[j] = s.softcap * std::tanh(probabilities[j] / s.softcap);
    largest = std::max(largest, probabilities[j]);
  }
  if (largest == -INFINITY) {
    lse = INFINITY;
    return false;
  }
  double sum = 0;
  for (uint32_t j = 0; j < s.seq_kv; j++) {
    if (!masks.visible(b, i, j)) continue;
    probabilities[j] = std::exp(probabilities[j] - largest);
    sum += probabilities[j];
  }
  for (double& probability : probabilities) probability /= sum;
  lse = largest + std::log(sum);
  return true;
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* o, float* lse,
                       const kernels::AttentionShape& s, const uint32_t* q_segments, const uint32_t* kv_segments) {
  Masks masks{s, q_segments, kv_segments};
  uint32_t group = s.q_heads / s.kv_heads;
  std::vector<double> probabilities, row(s.head_dim);
  for (uint32_t b = 0; b < s.batch; b++) {
    for (uint32_t h = 0; h < s.q_heads; h++) {
      for (uint32_t i = 0; i < s.seq_q; i++) {
        double row_lse = 0;
        bool seen = row_probabilities(q, k, s, masks, b, h, i, probabilities, row_lse);
        std::fill(row.begin(), row.end(), 0.0);
        for (uint32_t j = 0; seen && j < s.seq_kv; j++) {
          if (probabilities[j] == 0) continue;
          const float* v_row = v + ((size_t(b) * s.seq_kv + j) * s.kv_heads + h / group) * s.head_dim;
          for (uint32_t d = 0; d < s.head_dim; d++) row[d] += probabilities[j] * v_row[d];
        }
        float* o_row = o + ((size_t(b) * s.seq_q + i) * s.q_heads + h) * s.head_dim;
        for (uint32_t d = 0; d < s.head_dim; d++) o_row[d] = static_cast<float>(row[d]);
        if (lse) lse[(size_t(b) * s.q_heads + h) * s.seq_q + i] = static_cast<float>(row_lse);
      }
    }
  }
}

void attention_backward(const float* q, const float* k, const float* v, const float* d_o, float* dq, float* dk,
                        float* dv, const kernels::AttentionShape& s, const uint32_t* q_segments,
                        const uint32_t* kv_segments) {
  Masks masks{s, q_segments, kv_segments};
  uint32_t group = s.q_heads / s.kv_heads;
  size_t kv_count = size_t(s.batch) * s.seq_kv * s.kv_heads * s.head_dim;
  std::vector<double> dk_sum(kv_count, 0.0), dv_sum(kv_count, 0.0), dq_row(s.head_dim);
  std::vector<double> probabilities, score_gradients(s.seq_kv);
  for (uint32_t b = 0; b < s.batch; b++) {
    for (uint32_t h = 0; h < s.q_heads; h++) {
      uint32_t kv_head = h / group;
      for (uint32_t i = 0; i < s.seq_q; i++) {
        size_t q_index = ((size_t(b) * s.seq_q + i) * s.q_heads + h) * s.head_dim;
        const float* q_row = q + q_index;
        const float* do_row = d_o + q_index;
        double row_lse = 0;
        bool seen = row_probabilities(q, k, s, masks, b, h, i, probabilities, row_lse);
        std::fill(dq_row.begin(), dq_row.end(), 0.0);
        if (seen) {
          // dP_j = dO · v_j;  delta = sum_j P_j dP_j;  dS_j = P_j (dP_j - delta)
          double delta = 0;
          for (uint32_t j = 0; j < s.seq_kv; j++) {
            score_gradients[j] = 0;
            if (probabilities[j] == 0) continue;
            const float* v_row = v + ((size_t(b) * s.seq_kv + j) * s.kv_heads + kv_head) * s.head_dim;
            for (uint32_t d = 0; d < s.head_dim; d++) score_gradients[j] += double(do_row[d]) * v_row[d];
            delta += probabilities[j] * score_gradients[j];
          }
          for (uint32_t j = 0; j < s.seq_kv; j++) {
            if (probabilities[j] == 0) continue;
            double ds = probabilities[j] * (score_gradients[j] - delta) * s.scale;
            if (s.softcap > 0) {  // through the capping: d(c tanh(x / c)) / dx = 1 - tanh^2
              const float* k_row = k + ((size_t(b) * s.seq_kv + j) * s.kv_heads + kv_head) * s.head_dim;
              double score = 0;
              for (uint32_t d = 0; d < s.head_dim; d++) score += double(q_row[d]) * k_row[d];
              double t = std::tanh(score * s.scale / s.softcap);
              ds *= 1 - t * t;
            }
            size_t kv_index = ((size_t(b) * s.seq_kv + j) * s.kv_heads + kv_head) * s.head_dim;
            for (uint32_t d = 0; d < s.head_dim; d++) {
              dq_row[d] += ds * k[kv_index + d];
              dk_sum[kv_index + d] += ds * q_row[d];
              dv_sum[kv_index + d] += probabilities[j] * do_row[d];
            }
          }
        }
        for (uint32_t d = 0; d < s.head_dim; d++) dq[q_index + d] = static_cast<float>(dq_row[d]);
      }
    }
  }
  for (size_t e = 0; e < kv_count; e++) {
    dk[e] = static_cast<float>(dk_sum[e]);
    dv[e] = static_cast<float>(dv_sum[e]);
  }
}

}  // namespace vkt::ref
