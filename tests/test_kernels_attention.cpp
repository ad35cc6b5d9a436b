// Attention kernels: causal grouped-query attention forward (online softmax) and backward
// (dq, dk, dv), against the fp64 CPU reference, finite differences, and each other. Two shader
// bodies: the device's own (direct on CPU drivers such as lavapipe, tiled on GPUs) runs every
// case; the tiled one is also forced with its kill switch (as the GPU path), and the direct one
// gets its production block sizes, forced odd ones, narrower loads and long sequences.
//
// Tolerances. Inputs are uniform in [-1.5, 1.5] and head_dim <= 256, so a score is a sum of at
// most 256 fp32 products (relative rounding ~ sqrt(256) * 6e-8 ~ 1e-6) fed to fp32 exp2 (a few
// ulp). o is a convex combination of values of magnitude ~1 and lse ~ log(keys) + max score, so
// both stay within ~5e-7 of the fp64 reference (measured on lavapipe: max-abs <= 4.8e-7, NMSE
// <= 1.5e-13); gradients sum up to 70 keys x 4 heads of such terms (measured: max-abs <= 2.9e-6,
// NMSE <= 1.3e-13). The bounds keep a ~10x margin on max-abs and ~100x on NMSE for other
// drivers' exp2 and FMA contraction, while an indexing or masking bug errs by 1e-2 and more.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "engine/base/error.hpp"
#include "engine/kernels/attention.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::AttentionShape;
using test::context;
using test::Guarded;
using test::ScopedEnv;

namespace {

constexpr double forward_nmse = 1e-11, forward_max_abs = 5e-6;
constexpr double lse_max_abs = 5e-6;
constexpr double gradient_nmse = 1e-11, gradient_max_abs = 3e-5;

struct Inputs {
  AttentionShape shape;
  std::vector<float> q, k, v;                     // as the kernels' layouts
  std::vector<uint32_t> q_segments, kv_segments;  // empty: no segments; kv empty: q's
};

AttentionShape make_shape(uint32_t batch, uint32_t seq_q, uint32_t seq_kv, uint32_t q_heads, uint32_t kv_heads,
                          uint32_t head_dim, uint32_t q_offset = 0) {
  AttentionShape shape;
  shape.batch = batch;
  shape.seq_q = seq_q;
  shape.seq_kv = seq_kv;
  shape.q_heads = q_heads;
  shape.kv_heads = kv_heads;
  shape.head_dim = head_dim;
  shape.q_offset = q_offset;
  shape.scale = 1.0f / std::sqrt(float(head_dim));
  return shape;
}

size_t q_count(const AttentionShape& s) { return size_t(s.batch) * s.seq_q * s.q_heads * s.head_dim; }
size_t kv_count(const AttentionShape& s) { return size_t(s.batch) * s.seq_kv * s.kv_heads * s.head_dim; }
size_t stat_count(const AttentionShape& s) { return size_t(s.batch) * s.q_heads * s.seq_q; }

Inputs make_inputs(const AttentionShape& shape, uint32_t seed) {
  Inputs in;
  in.shape = shape;
  in.q = test::random_floats(q_count(shape), seed, -1.5f, 1.5f);
  in.k = test::random_floats(kv_count(shape), seed + 1, -1.5f, 1.5f);
  in.v = test::random_floats(kv_count(shape), seed + 2, -1.5f, 1.5f);
  return in;
}

std::string describe(const AttentionShape& s) {
  return "batch " + std::to_string(s.batch) + " seq_q " + std::to_string(s.seq_q) + " seq_kv " +
         std::to_string(s.seq_kv) + " heads " + std::to_string(s.q_heads) + "/" + std::to_string(s.kv_heads) +
         " head_dim " + std::to_string(s.head_dim) + " q_offset " + std::to_string(s.q_offset);
}

const uint32_t* optional_data(const std::vector<uint32_t>& values) { return values.empty() ? nullptr : values.data(); }

// Segment buffers for a kernel call (absent when the inputs have none).
struct SegmentBuffers {
  std::optional<Guarded> q, kv;
  kernels::BufferRange q_range, kv_range;
  explicit SegmentBuffers(const Inputs& in) {
    if (!in.q_segments.empty()) q.emplace(Guarded::of_raw(in.q_segments, "q_segments")), q_range = q->range();
    if (!in.kv_segments.empty()) kv.emplace(Guarded::of_raw(in.kv_segments, "kv_segments")), kv_range = kv->range();
  }
  const kernels::BufferRange* q_pointer() const { return q ? &q_range : nullptr; }
  const kernels::BufferRange* kv_pointer() const { return kv ? &kv_range : nullptr; }
};

struct ForwardResult {
  std::vector<float> o, lse;
};

// Bytes every head tensor (q, k, v, o, d_o, dq, dk, dv) starts into its buffer. 16 keeps the
// kernels' 16-byte alignment but not 32, so the direct body has to use narrower loads.
uint32_t tensor_shift = 0;

// A device tensor of `values` placed tensor_shift bytes into its guarded buffer.
struct HeadTensor {
  Guarded buffer;
  explicit HeadTensor(const std::vector<float>& values, const std::string& name)
      : buffer(Guarded::of(with_prefix(values), name)) {}
  explicit HeadTensor(size_t count, const std::string& name) : buffer(count * 4 + tensor_shift, name) {}
  kernels::BufferRange range() const {
    kernels::BufferRange full = buffer.range();
    return {full.buffer, full.offset + tensor_shift, full.bytes - tensor_shift, full.address + tensor_shift};
  }
  std::vector<float> floats() const {
    std::vector<float> all = buffer.floats();
    return {all.begin() + tensor_shift / 4, all.end()};
  }
  static std::vector<float> with_prefix(const std::vector<float>& values) {
    std::vector<float> padded(tensor_shift / 4, 0.0f);
    padded.insert(padded.end(), values.begin(), values.end());
    return padded;
  }
};

// Runs kernels::attention_forward; split: pass a workspace when the shape splits over keys.
ForwardResult gpu_forward(const Inputs& in, bool split = true) {
  const AttentionShape& s = in.shape;
  HeadTensor q(in.q, "q"), k(in.k, "k"), v(in.v, "v"), o(q_count(s), "o");
  Guarded lse(stat_count(s) * 4, "lse");
  SegmentBuffers segments(in);
  uint64_t workspace_bytes = kernels::attention_forward_workspace_bytes(s);
  Guarded workspace(std::max<uint64_t>(workspace_bytes, 16), "workspace");
  kernels::BufferRange workspace_range = workspace.range();
  context().run([&](vk::Recorder& r) {
    kernels::attention_forward(r, q.range(), k.range(), v.range(), o.range(), lse.range(), s, segments.q_pointer(),
                               segments.kv_pointer(), split && workspace_bytes ? &workspace_range : nullptr);
  });
  CHECK(o.buffer.guard_intact());
  CHECK(lse.guard_intact());
  CHECK(workspace.guard_intact());
  return {o.floats(), lse.floats()};
}

ForwardResult cpu_forward(const Inputs& in) {
  ForwardResult result{std::vector<float>(q_count(in.shape)), std::vector<float>(stat_count(in.shape))};
  ref::attention_forward(in.q.data(), in.k.data(), in.v.data(), result.o.data(), result.lse.data(), in.shape,
                         optional_data(in.q_segments), optional_data(in.kv_segments));
  return result;
}

// lse: +inf exactly where the reference has +inf (rows that see no key), close elsewhere.
void check_lse(const std::vector<float>& actual, const std::vector<float>& expected, const std::string& what) {
  REQUIRE(actual.size() == expected.size());
  std::vector<float> finite_actual, finite_expected;
  size_t infinite_mismatches = 0;
  for (size_t i = 0; i < expected.size(); i++) {
    if (std::isinf(expected[i]) || std::isinf(actual[i])) {
      if (!(std::isinf(expected[i]) && expected[i] > 0 && actual[i] == expected[i])) infinite_mismatches++;
      continue;
    }
    finite_actual.push_back(actual[i]);
    finite_expected.push_back(expected[i]);
  }
  INFO(what);
  CHECK(infinite_mismatches == 0);
  if (!finite_expected.empty()) test::check_close(finite_actual, finite_expected, 1e-10, lse_max_abs, what + " lse");
}

void check_forward(const Inputs& in, const std::string& what) {
  ForwardResult expected = cpu_forward(in);
  ForwardResult actual = gpu_forward(in);
  test::check_close(actual.o, expected.o, forward_nmse, forward_max_abs, what + " o");
  check_lse(actual.lse, expected.lse, what);
}

struct BackwardResult {
  std::vector<float> dq, dk, dv;
};

// Runs the GPU forward then kernels::attention_backward with upstream gradient d_o.
BackwardResult gpu_backward(const Inputs& in, const std::vector<float>& d_o_values) {
  const AttentionShape& s = in.shape;
  ForwardResult forward = gpu_forward(in);
  HeadTensor q(in.q, "q"), k(in.k, "k"), v(in.v, "v"), o(forward.o, "o"), d_o(d_o_values, "d_o");
  Guarded lse = Guarded::of(forward.lse, "lse");
  Guarded delta(stat_count(s) * 4, "delta");
  HeadTensor dq(q_count(s), "dq"), dk(kv_count(s), "dk"), dv(kv_count(s), "dv");
  SegmentBuffers segments(in);
  context().run([&](vk::Recorder& r) {
    kernels::attention_backward(r, q.range(), k.range(), v.range(), o.range(), d_o.range(), lse.range(), delta.range(),
                                dq.range(), dk.range(), dv.range(), s, segments.q_pointer(), segments.kv_pointer());
  });
  CHECK(delta.guard_intact());
  CHECK(dq.buffer.guard_intact());
  CHECK(dk.buffer.guard_intact());
  CHECK(dv.buffer.guard_intact());
  return {dq.floats(), dk.floats(), dv.floats()};
}

BackwardResult cpu_backward(const Inputs& in, const std::vector<float>& d_o) {
  BackwardResult result{std::vector<float>(q_count(in.shape)), std::vector<float>(kv_count(in.shape)),
                        std::vector<float>(kv_count(in.shape))};
  ref::attention_backward(in.q.data(), in.k.data(), in.v.data(), d_o.data(), result.dq.data(), result.dk.data(),
                          result.dv.data(), in.shape, optional_data(in.q_segments), optional_data(in.kv_segments));
  return result;
}

void check_backward(const Inputs& in, const std::string& what, uint32_t seed = 99) {
  std::vector<float> d_o = test::random_floats(q_count(in.shape), seed);
  BackwardResult expected = cpu_backward(in, d_o);
  BackwardResult actual = gpu_backward(in, d_o);
  test::check_close(actual.dq, expected.dq, gradient_nmse, gradient_max_abs, what + " dq");
  test::check_close(actual.dk, expected.dk, gradient_nmse, gradient_max_abs, what + " dk");
  test::check_close(actual.dv, expected.dv, gradient_nmse, gradient_max_abs, what + " dv");
}

// Forces small tiles for the scope, so that small shapes cross many tile boundaries.
// The direct body takes rows as its forward/dQ rows per workgroup, keys as its dK/dV keys per
// workgroup, and direct_keys as its forward/dQ keys per loop iteration.
struct ForcedTiles {
  ForcedTiles(uint32_t rows, uint32_t keys, uint32_t threads, uint32_t keys_per_split = 0, uint32_t direct_keys = 0) {
    kernels::AttentionOverride value;
    value.tiles = {rows, keys, threads};
    value.keys_per_split = keys_per_split;
    value.direct_keys = direct_keys;
    kernels::attention_override_for_tests(value);
  }
  ~ForcedTiles() { kernels::attention_override_for_tests(std::nullopt); }
};

struct ScopedShift {
  explicit ScopedShift(uint32_t bytes) { tensor_shift = bytes; }
  ~ScopedShift() { tensor_shift = 0; }
};

// Packed documents of `length` tokens (the last one shorter) in every sequence.
std::vector<uint32_t> documents(uint32_t batch, uint32_t seq, uint32_t length) {
  std::vector<uint32_t> ids;
  for (uint32_t b = 0; b < batch; b++)
    for (uint32_t i = 0; i < seq; i++) ids.push_back(b * 1000 + i / length);
  return ids;
}

// Odd shapes: seq 1, 3, 17, 70; head_dim 8, 16, 20 (5 vec4: no power of two), 64, 128, 256;
// q_heads 4 over kv_heads 4, 2, 1; batch 2.
std::vector<AttentionShape> odd_shapes() {
  return {make_shape(1, 1, 1, 4, 4, 8),    make_shape(2, 3, 3, 4, 1, 16),   make_shape(2, 17, 17, 4, 1, 64),
          make_shape(1, 70, 70, 4, 2, 64), make_shape(2, 17, 17, 4, 4, 20), make_shape(1, 33, 33, 2, 1, 128),
          make_shape(1, 9, 9, 2, 2, 256)};
}

// Forced tiles: 8 rows x 8 keys of 64 threads (valid for every pass and head_dim).
// Each distinct (head_dim, tiles) is one more pipeline to compile (about a second on lavapipe),
// so only head_dim 16 and 64 get them.
std::vector<std::array<uint32_t, 3>> forced_configs(uint32_t head_dim) {
  if (head_dim == 16 || head_dim == 64) return {{8, 8, 64}};
  return {};
}

// Packed sequences: sequence 0 holds three documents (10, 20 and 7 tokens), sequence 1 one
// document of ids 5 and padding (id 0xffffffff, which attends to itself only).
std::vector<uint32_t> packed_segments(uint32_t seq) {
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < seq; i++) ids.push_back(i < 10 ? 0 : i < 30 ? 1 : 2);
  for (uint32_t i = 0; i < seq; i++) ids.push_back(i < seq - 6 ? 5 : 0xffffffffu);
  return ids;
}

// Queries of segment 7 see no key (no key carries 7): their rows must come out as o = 0,
// lse = +inf, and zero gradients, never NaN.
Inputs fully_masked_inputs() {
  Inputs in = make_inputs(make_shape(2, 6, 20, 8, 2, 16, 14), 500);
  in.q_segments = {1, 1, 7, 1, 7, 1, 7, 7, 7, 7, 7, 7};  // sequence 1: every row is masked
  in.kv_segments.assign(40, 1);
  return in;
}

}  // namespace

TEST_SUITE("kernels_attention") {

TEST_CASE("attention_forward: matches the reference on odd shapes") {
  uint32_t seed = 1;
  for (const AttentionShape& shape : odd_shapes()) check_forward(make_inputs(shape, seed++ * 10), describe(shape));
}

TEST_CASE("attention_forward: small forced tiles cross many tile boundaries") {
  uint32_t seed = 100;
  for (const AttentionShape& shape : odd_shapes()) {
    for (auto [rows, keys, threads] : forced_configs(shape.head_dim)) {
      ForcedTiles forced(rows, keys, threads);
      check_forward(make_inputs(shape, seed++), describe(shape) + " tiles " + std::to_string(rows) + "x" +
                                                    std::to_string(keys) + "/" + std::to_string(threads));
    }
  }
}

TEST_CASE("attention_forward: KV cache (q_offset > 0, seq_kv > seq_q)") {
  // The new tokens are the last of the cache, and a cache only partly filled (keys past
  // q_offset + i are masked even though they exist).
  check_forward(make_inputs(make_shape(2, 5, 23, 8, 2, 16, 18), 200), "last 5 of 23");
  check_forward(make_inputs(make_shape(1, 5, 30, 4, 1, 64, 7), 201), "5 new after 7 cached, capacity 30");
  {
    ForcedTiles forced(8, 8, 64);
    check_forward(make_inputs(make_shape(2, 5, 23, 8, 2, 16, 18), 202), "last 5 of 23, 8x8 tiles");
  }
  // Incremental = full: the last rows of a full causal pass equal a cached pass over them.
  AttentionShape full_shape = make_shape(2, 23, 23, 8, 2, 16);
  Inputs full = make_inputs(full_shape, 203);
  ForwardResult full_result = gpu_forward(full);
  Inputs cached = full;
  cached.shape = make_shape(2, 5, 23, 8, 2, 16, 18);
  size_t row = size_t(full_shape.q_heads) * full_shape.head_dim;
  cached.q.clear();
  std::vector<float> expected_o, expected_lse;
  for (uint32_t b = 0; b < 2; b++)
    for (uint32_t i = 18; i < 23; i++) {
      size_t token = size_t(b) * 23 + i;
      cached.q.insert(cached.q.end(), full.q.begin() + token * row, full.q.begin() + (token + 1) * row);
      expected_o.insert(expected_o.end(), full_result.o.begin() + token * row,
                        full_result.o.begin() + (token + 1) * row);
    }
  for (uint32_t b = 0; b < 2; b++)
    for (uint32_t h = 0; h < 8; h++)
      for (uint32_t i = 18; i < 23; i++) expected_lse.push_back(full_result.lse[(b * 8 + h) * 23 + i]);
  ForwardResult cached_result = gpu_forward(cached);
  test::check_close(cached_result.o, expected_o, forward_nmse, forward_max_abs, "cached vs full o");
  check_lse(cached_result.lse, expected_lse, "cached vs full");
}

TEST_CASE("attention_forward: decode splits long key ranges over workgroups") {
  // seq_q = 1 over 600 keys, 2 kv heads: few workgroups, so the keys are split and combined.
  AttentionShape decode = make_shape(1, 1, 600, 8, 2, 64, 599);
  CHECK(kernels::attention_forward_workspace_bytes(decode) > 0);
  Inputs in = make_inputs(decode, 300);
  check_forward(in, "decode 1 x 600");
  ForwardResult split = gpu_forward(in, true), whole = gpu_forward(in, false);
  test::check_close(split.o, whole.o, forward_nmse, forward_max_abs, "split vs unsplit o");
  check_lse(split.lse, whole.lse, "split vs unsplit");
  // Forced 64-key splits: batch 2, three new tokens, and segments so that some splits of a row
  // see no key at all (their partial lse is +inf and must not poison the combination).
  ForcedTiles forced(8, 8, 64, 64);
  Inputs segmented = make_inputs(make_shape(2, 3, 200, 4, 1, 16, 197), 301);
  CHECK(kernels::attention_forward_workspace_bytes(segmented.shape) > 0);
  check_forward(segmented, "forced splits of 64 keys");
  for (uint32_t b = 0; b < 2; b++)
    for (uint32_t j = 0; j < 200; j++) segmented.kv_segments.push_back(j < 150 ? 3 : 4);
  segmented.q_segments = {3, 4, 4, 4, 3, 4};
  check_forward(segmented, "forced splits of 64 keys, segments");
}

TEST_CASE("attention_forward: segment ids mask across packed documents") {
  Inputs in = make_inputs(make_shape(2, 37, 37, 4, 2, 16), 400);
  in.q_segments = packed_segments(37);
  check_forward(in, "packed, auto tiles");
  ForcedTiles forced(8, 8, 64);
  check_forward(in, "packed, 8x8 tiles");
}

TEST_CASE("attention_forward: rows that see no key give o = 0 and lse = +inf, never NaN") {
  Inputs in = fully_masked_inputs();
  ForwardResult result = gpu_forward(in);
  check_forward(in, "fully masked rows");
  size_t row = size_t(in.shape.q_heads) * in.shape.head_dim;
  for (size_t e = 0; e < row; e++) CHECK(result.o[2 * row + e] == 0.0f);  // query 2 of sequence 0
  CHECK(std::isinf(result.lse[2]));
}

TEST_CASE("attention_backward: matches finite differences of the GPU forward") {
  // GQA (2 q heads on 1 kv head), 4 new tokens after 2 cached, segments. The loss is
  // sum(o ∘ g) in double over the GPU forward's fp32 output; its rounding noise (~1e-7 relative
  // per element) over a 4-point stencil with step 1e-2 gives ~1e-5 absolute error on
  // gradients of ~0.1: NMSE ~1e-8 (measured 2e-11 .. 1e-8), checked at 1e-6; a wrong term
  // (say, a missing delta) gives NMSE ~1e-1.
  Inputs in = make_inputs(make_shape(1, 4, 6, 2, 1, 8, 2), 600);
  in.q_segments = {1, 1, 2, 2};
  in.kv_segments = {1, 1, 1, 1, 2, 2};
  std::vector<float> g = test::random_floats(q_count(in.shape), 601);
  BackwardResult analytic = gpu_backward(in, g);
  auto loss_of = [&](std::vector<float> Inputs::*tensor) {
    return [&, tensor](const std::vector<float>& values) {
      Inputs probe = in;
      probe.*tensor = values;
      return test::dot(gpu_forward(probe).o, g);
    };
  };
  test::check_gradient(loss_of(&Inputs::q), in.q, analytic.dq, 1e-2f, 1e-6, 24, "dq");
  test::check_gradient(loss_of(&Inputs::k), in.k, analytic.dk, 1e-2f, 1e-6, 24, "dk");
  test::check_gradient(loss_of(&Inputs::v), in.v, analytic.dv, 1e-2f, 1e-6, 24, "dv");
}

TEST_CASE("attention_backward: the reference matches finite differences of the reference forward") {
  // Every position, GQA over 2 groups, KV cache offset and segments: the oracle itself is right.
  // fp64 sums, only o rounded to fp32: measured NMSE <= 1e-10, checked at 1e-8.
  Inputs in = make_inputs(make_shape(2, 3, 5, 4, 2, 4, 2), 700);
  in.q_segments = {1, 1, 2, 3, 3, 3};
  in.kv_segments = {1, 1, 1, 2, 2, 3, 3, 3, 3, 3};
  std::vector<float> g = test::random_floats(q_count(in.shape), 701);
  BackwardResult analytic = cpu_backward(in, g);
  auto loss_of = [&](std::vector<float> Inputs::*tensor) {
    return [&, tensor](const std::vector<float>& values) {
      Inputs probe = in;
      probe.*tensor = values;
      return test::dot(cpu_forward(probe).o, g);
    };
  };
  test::check_gradient(loss_of(&Inputs::q), in.q, analytic.dq, 1e-2f, 1e-8, 1 << 30, "ref dq");
  test::check_gradient(loss_of(&Inputs::k), in.k, analytic.dk, 1e-2f, 1e-8, 1 << 30, "ref dk");
  test::check_gradient(loss_of(&Inputs::v), in.v, analytic.dv, 1e-2f, 1e-8, 1 << 30, "ref dv");
}

TEST_CASE("attention_backward: matches the reference on odd shapes") {
  uint32_t seed = 800;
  for (const AttentionShape& shape : odd_shapes()) check_backward(make_inputs(shape, seed++), describe(shape));
}

TEST_CASE("attention_backward: small forced tiles cross many tile boundaries") {
  uint32_t seed = 900;
  for (const AttentionShape& shape : odd_shapes()) {
    for (auto [rows, keys, threads] : forced_configs(shape.head_dim)) {
      ForcedTiles forced(rows, keys, threads);
      check_backward(make_inputs(shape, seed++), describe(shape) + " tiles " + std::to_string(rows) + "x" +
                                                     std::to_string(keys) + "/" + std::to_string(threads));
    }
  }
}

TEST_CASE("attention_backward: KV cache offset, segments and fully masked rows") {
  check_backward(make_inputs(make_shape(2, 5, 23, 8, 2, 16, 18), 1000), "last 5 of 23");
  check_backward(make_inputs(make_shape(1, 5, 30, 4, 1, 64, 7), 1001), "5 new after 7 cached, capacity 30");
  Inputs packed = make_inputs(make_shape(2, 37, 37, 4, 2, 16), 1002);
  packed.q_segments = packed_segments(37);
  check_backward(packed, "packed");
  {
    ForcedTiles forced(8, 8, 64);
    check_backward(packed, "packed, 8x8 tiles");
  }
  Inputs masked = fully_masked_inputs();
  check_backward(masked, "fully masked rows");
  BackwardResult result = gpu_backward(masked, test::random_floats(q_count(masked.shape), 1003));
  size_t row = size_t(masked.shape.q_heads) * masked.shape.head_dim;
  for (size_t e = 0; e < row; e++) CHECK(result.dq[2 * row + e] == 0.0f);  // query 2 of sequence 0
}

TEST_CASE("attention_backward: deterministic (bitwise equal reruns)") {
  // dk/dv sum over the 4 q heads of one kv head in a fixed order: no atomics, no run-to-run noise.
  Inputs in = make_inputs(make_shape(2, 40, 40, 4, 1, 64), 1100);
  std::vector<float> g = test::random_floats(q_count(in.shape), 1101);
  BackwardResult first = gpu_backward(in, g), second = gpu_backward(in, g);
  CHECK(std::memcmp(first.dq.data(), second.dq.data(), first.dq.size() * 4) == 0);
  CHECK(std::memcmp(first.dk.data(), second.dk.data(), first.dk.size() * 4) == 0);
  CHECK(std::memcmp(first.dv.data(), second.dv.data(), first.dv.size() * 4) == 0);
}

TEST_CASE("attention: the direct body runs on CPU drivers, and its kill switch restores the tiled one") {
  const vk::Capabilities& caps = context().caps();
  bool cpu_driver = caps.device_type == VK_PHYSICAL_DEVICE_TYPE_CPU && caps.min_subgroup_size == caps.max_subgroup_size;
  {
    ScopedEnv direct("VKT_DISABLE_ATTENTION_DIRECT", "0");
    if (cpu_driver) CHECK(kernels::attention_uses_direct_body(context()));
    if (caps.device_type != VK_PHYSICAL_DEVICE_TYPE_CPU) CHECK_FALSE(kernels::attention_uses_direct_body(context()));
  }
  ScopedEnv tiled("VKT_DISABLE_ATTENTION_DIRECT", "1");
  CHECK_FALSE(kernels::attention_uses_direct_body(context()));
}

TEST_CASE("attention (tiled body, the GPU path): forward and backward") {
  // The device's own body runs every other case; here the shared-memory tiled body is forced
  // (a no-op on GPUs), with small tiles so that these shapes cross many tile boundaries: packed
  // segments, a KV cache offset, fully masked rows, and split decode. One pipeline per pass
  // (head_dim 16, 8x8 tiles) keeps this cheap on lavapipe; the whole suite also runs with
  // VKT_DISABLE_ATTENTION_DIRECT=1, the automatic tiles included.
  ScopedEnv tiled("VKT_DISABLE_ATTENTION_DIRECT", "1");
  ForcedTiles forced(8, 8, 64);
  Inputs packed = make_inputs(make_shape(2, 37, 37, 4, 2, 16), 1201);
  packed.q_segments = packed_segments(37);
  check_forward(packed, "tiled, packed");
  check_backward(packed, "tiled, packed");
  Inputs cached = make_inputs(make_shape(2, 5, 23, 8, 2, 16, 18), 1202);
  check_forward(cached, "tiled, last 5 of 23");
  check_backward(cached, "tiled, last 5 of 23");
  Inputs masked = fully_masked_inputs();
  check_forward(masked, "tiled, fully masked rows");
  check_backward(masked, "tiled, fully masked rows");
  ForcedTiles split(8, 8, 64, 64);
  check_forward(make_inputs(make_shape(2, 1, 300, 8, 2, 16, 299), 1203), "tiled, split decode");
}

// Gemma: an explicit scale (query_pre_attn_scalar^-0.5), a sliding window shorter than the
// sequence, and Gemma 2's score soft-capping (softcap 2 bends scores of up to ~9 hard). Both
// bodies: the device's own and the tiled one (its kill switch), forward and backward.
Inputs gemma_inputs(const AttentionShape& base, uint32_t window, float softcap, uint32_t seed) {
  Inputs in = make_inputs(base, seed);
  in.shape.scale = 0.3f;
  in.shape.window = window;
  in.shape.softcap = softcap;
  return in;
}

TEST_CASE("attention: sliding window and soft-capping (Gemma), both bodies, forward and backward") {
  for (const char* disable_direct : {"0", "1"}) {
    CAPTURE(disable_direct);
    ScopedEnv body("VKT_DISABLE_ATTENTION_DIRECT", disable_direct);
    std::optional<ForcedTiles> forced;
    if (std::string(disable_direct) == "1") forced.emplace(8, 8, 64);
    for (float softcap : {0.0f, 2.0f}) {
      CAPTURE(softcap);
      Inputs packed = gemma_inputs(make_shape(2, 37, 37, 4, 2, 16), 5, softcap, 1401);
      packed.q_segments = packed_segments(37);
      check_forward(packed, "window 5, packed");
      check_backward(packed, "window 5, packed");
      Inputs cached = gemma_inputs(make_shape(2, 5, 23, 8, 2, 16, 18), 7, softcap, 1402);
      check_forward(cached, "window 7, last 5 of 23");
      check_backward(cached, "window 7, last 5 of 23");
      Inputs wide = gemma_inputs(make_shape(1, 33, 33, 2, 1, 64), 40, softcap, 1403);  // window past the sequence
      check_forward(wide, "window 40 of 33");
      check_backward(wide, "window 40 of 33");
    }
  }
  // The window changes the result (else this test could not fail): window 5 vs none.
  Inputs windowed = gemma_inputs(make_shape(1, 17, 17, 2, 1, 16), 5, 0.0f, 1404), full = windowed;
  full.shape.window = 0;
  CHECK(gpu_forward(windowed).o != gpu_forward(full).o);
}

TEST_CASE("attention_backward: window and soft-capping match finite differences (GPU forward and reference)") {
  // As the plain finite-difference cases: NMSE ~1e-8 from fp32 forward noise; a missing
  // 1 - tanh^2 factor gives NMSE ~1e-1.
  Inputs in = gemma_inputs(make_shape(1, 6, 6, 2, 1, 8), 3, 1.5f, 1500);
  std::vector<float> g = test::random_floats(q_count(in.shape), 1501);
  for (bool reference : {false, true}) {
    CAPTURE(reference);
    BackwardResult analytic = reference ? cpu_backward(in, g) : gpu_backward(in, g);
    auto loss_of = [&](std::vector<float> Inputs::*tensor) {
      return [&, tensor](const std::vector<float>& values) {
        Inputs probe = in;
        probe.*tensor = values;
        return test::dot(reference ? cpu_forward(probe).o : gpu_forward(probe).o, g);
      };
    };
    double nmse = reference ? 1e-8 : 1e-6;
    test::check_gradient(loss_of(&Inputs::q), in.q, analytic.dq, 1e-2f, nmse, 48, "dq");
    test::check_gradient(loss_of(&Inputs::k), in.k, analytic.dk, 1e-2f, nmse, 48, "dk");
    test::check_gradient(loss_of(&Inputs::v), in.v, analytic.dv, 1e-2f, nmse, 48, "dv");
  }
}

TEST_CASE("attention: production block sizes of a training step (packed sequences)") {
  // The shape class the trainer runs (T=128 packed, GQA 4/2, head_dim 64): on lavapipe the
  // direct body's automatic choice (forward 32 rows x 8 keys per step, dQ 32 x 4, dK/dV 16 keys),
  // which the small shapes elsewhere do not reach.
  Inputs in = make_inputs(make_shape(2, 128, 128, 4, 2, 64), 1300);
  in.q_segments = documents(2, 128, 50);
  check_forward(in, "training step, packed");
  check_backward(in, "training step, packed");
}

TEST_CASE("attention: odd direct-body blocks (rows, keys per step, dK/dV keys)") {
  // Forced (rows, dK/dV keys, forward/dQ keys per step): 32 rows = 4 rows per lane, 1 and 2
  // keys per step, dK/dV blocks of 3 and 24 keys (not multiples of the subgroup size). On a GPU
  // the same override picks tiled tiles instead, also valid.
  struct Case {
    AttentionShape shape;
    uint32_t rows, keys, direct_keys;
  };
  uint32_t seed = 1400;
  for (Case c :
       {Case{make_shape(2, 37, 37, 4, 2, 16), 32, 24, 2}, Case{make_shape(1, 19, 26, 6, 3, 20, 7), 16, 3, 1}}) {
    Inputs in = make_inputs(c.shape, seed++);
    if (c.shape.seq_q == c.shape.seq_kv) in.q_segments = packed_segments(37);
    std::string what = describe(c.shape) + " rows " + std::to_string(c.rows) + " keys " + std::to_string(c.keys) +
                       " step " + std::to_string(c.direct_keys);
    bool tiled_valid = c.keys % 8 == 0 && c.keys <= 64;  // the tiled body takes 8..64 keys
    if (!kernels::attention_uses_direct_body(context()) && !tiled_valid) continue;
    ForcedTiles forced(c.rows, c.keys, 64, 0, c.direct_keys);
    check_forward(in, what);
    check_backward(in, what);
  }
  // head_dim 4: two 64-bit words per head vector, so six of the eight lanes hold only padding.
  Inputs tiny = make_inputs(make_shape(2, 9, 9, 4, 2, 4), 1410);
  check_forward(tiny, "head_dim 4");
  check_backward(tiny, "head_dim 4");
}

TEST_CASE("attention: tensors aligned to 16 bytes only (narrower loads in the direct body)") {
  ScopedShift shift(16);
  Inputs in = make_inputs(make_shape(2, 17, 17, 4, 2, 64), 1500);
  in.q_segments = packed_segments(17);
  check_forward(in, "16-byte aligned");
  check_backward(in, "16-byte aligned");
}

TEST_CASE("attention: long sequences (1024 tokens, decode over 3000 cached keys)") {
  // Many iterations of every loop: lavapipe silently stops a shader's loops after ~65535
  // iterations, and the online softmax rescales over hundreds of key blocks.
  Inputs long_in = make_inputs(make_shape(1, 1024, 1024, 2, 1, 16), 1600);
  check_forward(long_in, "1024 tokens");
  check_backward(long_in, "1024 tokens");
  // Decode: one new token over 3000 cached keys, split over workgroups and not.
  Inputs decode = make_inputs(make_shape(2, 1, 3000, 8, 2, 16, 2999), 1601);
  check_forward(decode, "decode over 3000 keys");
  ForwardResult split = gpu_forward(decode, true), whole = gpu_forward(decode, false);
  test::check_close(split.o, whole.o, forward_nmse, forward_max_abs, "decode split vs unsplit o");
}

TEST_CASE("attention: a key walk too long for the direct body is refused, not cut short") {
  if (!kernels::attention_uses_direct_body(context())) return;  // the guard belongs to the direct body
  // 600000 keys at 8 per loop iteration: more than llvmpipe's ~65535 iterations per shader.
  AttentionShape shape = make_shape(1, 1, 600000, 1, 1, 4, 599999);
  Guarded q(16, "q"), o(16, "o"), lse(16, "lse");
  Guarded k(kv_count(shape) * 4, "k"), v(kv_count(shape) * 4, "v");
  CHECK_THROWS_AS(context().run([&](vk::Recorder& r) {
    kernels::attention_forward(r, q.range(), k.range(), v.range(), o.range(), lse.range(), shape);
  }),
                  UserError);
}

}  // TEST_SUITE
