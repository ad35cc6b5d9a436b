// Attention kernels: causal grouped-query attention forward (online softmax) and backward
// (dq, dk, dv), against the fp64 CPU reference, finite differences, and each other.
//
// Tolerances. Inputs are uniform in [-1.5, 1.5], head_dim <= 256, so a score is a sum of at
// most 256 fp32 products (relative rounding ~ sqrt(256) * 6e-8 ~ 1e-6) and a softmax of fp32
// exp2 values (a few ulp each). Outputs are convex combinations (o) or short sums (gradients) of
// values of magnitude ~1, so fp32 errors stay near 1e-6 absolute; the bounds below (NMSE 1e-10,
// max-abs 2e-5 for outputs; 1e-9 / 5e-5 for gradients, which add ~2x more rounding steps over
// up to 70 keys and 4 heads) leave a 10-100x margin over that, and a real indexing or masking
// bug gives errors of order 1e-2 and above.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <optional>

#include "engine/kernels/attention.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::AttentionShape;
using test::context;
using test::Guarded;

namespace {

constexpr double forward_nmse = 1e-10, forward_max_abs = 2e-5;
constexpr double lse_max_abs = 2e-5;  // lse ~ log(keys) + max score ~ 10: 2e-5 is ~10x fp32 rounding
constexpr double gradient_nmse = 1e-9, gradient_max_abs = 5e-5;

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

void report(const std::vector<float>& a, const std::vector<float>& e, const std::string& what) {
  if (!std::getenv("ATT_VERBOSE")) return;
  auto c = test::compare(a, e);
  std::printf("%-70s nmse %.3g max_abs %.3g\n", what.c_str(), c.nmse, c.max_abs);
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

// Runs kernels::attention_forward; split: pass a workspace when the shape splits over keys.
ForwardResult gpu_forward(const Inputs& in, bool split = true) {
  const AttentionShape& s = in.shape;
  Guarded q = Guarded::of(in.q, "q"), k = Guarded::of(in.k, "k"), v = Guarded::of(in.v, "v");
  Guarded o(q_count(s) * 4, "o"), lse(stat_count(s) * 4, "lse");
  SegmentBuffers segments(in);
  uint64_t workspace_bytes = kernels::attention_forward_workspace_bytes(s);
  Guarded workspace(std::max<uint64_t>(workspace_bytes, 16), "workspace");
  kernels::BufferRange workspace_range = workspace.range();
  context().run([&](vk::Recorder& r) {
    kernels::attention_forward(r, q.range(), k.range(), v.range(), o.range(), lse.range(), s, segments.q_pointer(),
                               segments.kv_pointer(), split && workspace_bytes ? &workspace_range : nullptr);
  });
  CHECK(o.guard_intact());
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
  report(finite_actual, finite_expected, what + " lse");
  if (!finite_expected.empty()) test::check_close(finite_actual, finite_expected, 1e-10, lse_max_abs, what + " lse");
}

void check_forward(const Inputs& in, const std::string& what) {
  ForwardResult expected = cpu_forward(in);
  ForwardResult actual = gpu_forward(in);
  report(actual.o, expected.o, what + " o");
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
  Guarded q = Guarded::of(in.q, "q"), k = Guarded::of(in.k, "k"), v = Guarded::of(in.v, "v");
  Guarded o = Guarded::of(forward.o, "o"), lse = Guarded::of(forward.lse, "lse");
  Guarded d_o = Guarded::of(d_o_values, "d_o");
  Guarded delta(stat_count(s) * 4, "delta");
  Guarded dq(q_count(s) * 4, "dq"), dk(kv_count(s) * 4, "dk"), dv(kv_count(s) * 4, "dv");
  SegmentBuffers segments(in);
  context().run([&](vk::Recorder& r) {
    kernels::attention_backward(r, q.range(), k.range(), v.range(), o.range(), d_o.range(), lse.range(),
                                delta.range(), dq.range(), dk.range(), dv.range(), s, segments.q_pointer(),
                                segments.kv_pointer());
  });
  CHECK(delta.guard_intact());
  CHECK(dq.guard_intact());
  CHECK(dk.guard_intact());
  CHECK(dv.guard_intact());
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
  report(actual.dq, expected.dq, what + " dq");
  test::check_close(actual.dq, expected.dq, gradient_nmse, gradient_max_abs, what + " dq");
  report(actual.dk, expected.dk, what + " dk");
  test::check_close(actual.dk, expected.dk, gradient_nmse, gradient_max_abs, what + " dk");
  report(actual.dv, expected.dv, what + " dv");
  test::check_close(actual.dv, expected.dv, gradient_nmse, gradient_max_abs, what + " dv");
}

// Forces small tiles for the scope, so that small shapes cross many tile boundaries.
struct ForcedTiles {
  ForcedTiles(uint32_t rows, uint32_t keys, uint32_t threads, uint32_t keys_per_split = 0) {
    kernels::AttentionOverride value;
    value.tiles = {rows, keys, threads};
    value.keys_per_split = keys_per_split;
    kernels::attention_override_for_tests(value);
  }
  ~ForcedTiles() { kernels::attention_override_for_tests(std::nullopt); }
};

// Odd shapes: seq 1, 3, 17, 70; head_dim 8, 16, 20 (5 vec4: no power of two), 64, 128, 256;
// q_heads 4 over kv_heads 4, 2, 1; batch 2.
std::vector<AttentionShape> odd_shapes() {
  return {make_shape(1, 1, 1, 4, 4, 8),    make_shape(2, 3, 3, 4, 2, 16),  make_shape(2, 17, 17, 4, 1, 64),
          make_shape(1, 70, 70, 4, 2, 64), make_shape(2, 17, 17, 4, 4, 20), make_shape(1, 33, 33, 2, 1, 128),
          make_shape(1, 9, 9, 2, 2, 256)};
}

}  // namespace

TEST_SUITE("kernels_attention") {

TEST_CASE("attention_forward: matches the reference on odd shapes") {
  uint32_t seed = 1;
  for (const AttentionShape& shape : odd_shapes()) check_forward(make_inputs(shape, seed++ * 10), describe(shape));
}

}  // TEST_SUITE
