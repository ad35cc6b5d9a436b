// Prefix tuning's ops (engine/kernels/prefix.hpp): the joined keys/values and attention inputs
// against the CPU references (exact: they copy, and the backward's sums are short), and the
// backward against finite differences of the forward run on the device; their fp16/bf16 activation
// variants (--fp16/--bf16) against the fp32 path.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/base/half.hpp"
#include "engine/kernels/prefix.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

TEST_SUITE("kernels_attention") {
TEST_CASE("prefix_attention_inputs: positions move by the prefix, prefix keys take the row's first segment") {
  const kernels::PrefixShape shape{.batch = 3, .seq = 7, .prefix = 5, .kv_dim = 0, .layers = 0};
  std::vector<uint32_t> positions(21), segments(21);
  for (uint32_t i = 0; i < 21; i++) {
    positions[i] = (i * 7) % 11;
    segments[i] = i < 7 ? 0 : i < 14 ? (i % 7 < 4 ? 2u : 0xffffffffu) : 0xffffffffu;
  }
  std::vector<uint32_t> expected_positions(21), expected_segments(36);
  ref::prefix_attention_inputs(positions.data(), segments.data(), expected_positions.data(), expected_segments.data(),
                               shape);
  CHECK(expected_positions[8] == positions[8] + 5);
  CHECK(expected_segments[12 + 4] == 2);  // row 1's prefix: its first segment
  Guarded in_positions = Guarded::of_raw(positions, "positions"), in_segments = Guarded::of_raw(segments, "segments");
  Guarded out_positions(21 * 4, "positions_out"), kv_segments(36 * 4, "kv_segments");
  context().run([&](vk::Recorder& r) {
    kernels::prefix_attention_inputs(r, in_positions.range(), in_segments.range(), out_positions.range(),
                                     kv_segments.range(), shape);
  });
  CHECK(out_positions.read<uint32_t>() == expected_positions);
  CHECK(kv_segments.read<uint32_t>() == expected_segments);
  CHECK(out_positions.guard_intact());
  CHECK(kv_segments.guard_intact());
}

TEST_CASE("prefix_kv_concat: forward exact vs reference, backward vs reference and finite differences") {
  for (const kernels::PrefixShape shape :
       {kernels::PrefixShape{.batch = 2, .seq = 7, .prefix = 3, .kv_dim = 16, .layers = 3},
        kernels::PrefixShape{.batch = 3, .seq = 1, .prefix = 1, .kv_dim = 4, .layers = 1}}) {
    const uint32_t layer = shape.layers - 1;
    CAPTURE(shape.batch);
    const size_t prefix_n = size_t(shape.prefix) * shape.layers * 2 * shape.kv_dim;
    const size_t rows_n = size_t(shape.batch) * shape.seq * shape.kv_dim;
    const size_t joined_n = size_t(shape.batch) * (shape.prefix + shape.seq) * shape.kv_dim;
    auto prefix = test::random_floats(prefix_n, 31, -1, 1);
    auto k = test::random_floats(rows_n, 32, -1, 1), v = test::random_floats(rows_n, 33, -1, 1);
    auto wk = test::random_floats(joined_n, 34, -1, 1), wv = test::random_floats(joined_n, 35, -1, 1);
    auto run_forward = [&](const std::vector<float>& p, const std::vector<float>& kk, const std::vector<float>& vv) {
      Guarded gp = Guarded::of(p, "prefix"), gk = Guarded::of(kk, "k"), gv = Guarded::of(vv, "v");
      Guarded k_out(joined_n * 4, "k_out"), v_out(joined_n * 4, "v_out");
      context().run([&](vk::Recorder& r) {
        kernels::prefix_kv_concat(r, gp.range(), gk.range(), gv.range(), k_out.range(), v_out.range(), shape, layer);
      });
      CHECK(k_out.guard_intact());
      CHECK(v_out.guard_intact());
      return std::pair{k_out.floats(), v_out.floats()};
    };
    std::vector<float> ref_k(joined_n), ref_v(joined_n);
    ref::prefix_kv_concat(prefix.data(), k.data(), v.data(), ref_k.data(), ref_v.data(), shape, layer);
    auto [k_out, v_out] = run_forward(prefix, k, v);
    test::check_close(k_out, ref_k, 0, 0, "k_out");
    test::check_close(v_out, ref_v, 0, 0, "v_out");

    // Backward of loss = wk·k_out + wv·v_out; d_prefix starts non-zero (it accumulates).
    auto start = test::random_floats(prefix_n, 36, -1, 1);
    std::vector<float> ref_dk(rows_n), ref_dv(rows_n), ref_dp = start;
    ref::prefix_kv_concat_backward(wk.data(), wv.data(), ref_dk.data(), ref_dv.data(), ref_dp.data(), shape, layer);
    Guarded gwk = Guarded::of(wk, "dk_in"), gwv = Guarded::of(wv, "dv_in"), gdp = Guarded::of(start, "d_prefix");
    Guarded gdk(rows_n * 4, "dk"), gdv(rows_n * 4, "dv");
    context().run([&](vk::Recorder& r) {
      kernels::prefix_kv_concat_backward(r, gwk.range(), gwv.range(), gdk.range(), gdv.range(), gdp.range(), shape,
                                         layer);
    });
    test::check_close(gdk.floats(), ref_dk, 0, 0, "dk");
    test::check_close(gdv.floats(), ref_dv, 0, 0, "dv");
    test::check_close(gdp.floats(), ref_dp, 1e-12, 1e-6, "d_prefix");  // sums of <= 3 terms
    CHECK(gdk.guard_intact());
    CHECK(gdp.guard_intact());
    std::vector<float> d_prefix = gdp.floats();
    for (size_t i = 0; i < prefix_n; i++) d_prefix[i] -= start[i];
    auto loss = [&](const std::vector<float>& p, const std::vector<float>& kk, const std::vector<float>& vv) {
      auto [ko, vo] = run_forward(p, kk, vv);
      return test::dot(ko, wk) + test::dot(vo, wv);
    };
    test::check_gradient([&](const std::vector<float>& x) { return loss(x, k, v); }, prefix, d_prefix, 1e-2f, 1e-6, 12,
                         "d_prefix");
    test::check_gradient([&](const std::vector<float>& x) { return loss(prefix, x, v); }, k, gdk.floats(), 1e-2f, 1e-6,
                         8, "dk");
    test::check_gradient([&](const std::vector<float>& x) { return loss(prefix, k, x); }, v, gdv.floats(), 1e-2f, 1e-6,
                         8, "dv");
  }
}

// The 16-bit variants against the fp32 path (the reference, which the fp32 kernels match exactly) on
// the same 16-bit inputs: the sequence rows are copies (exact); the prefix rows are fp32 values
// rounded once to the activation type (to nearest even: |out - ref| <= u |ref|, u = 2^-8 for bf16,
// 2^-11 for fp16, plus fp16's subnormal spacing 2^-24); the fp32 d_prefix sums <= 3 exact 16-bit
// values onto its start (1e-6, as the fp32 case).
TEST_CASE("prefix_kv_concat: fp16/bf16 activations match the fp32 path within one 16-bit rounding") {
  const kernels::PrefixShape shape{.batch = 2, .seq = 5, .prefix = 3, .kv_dim = 8, .layers = 2};
  const size_t prefix_n = size_t(shape.prefix) * shape.layers * 2 * shape.kv_dim;
  const size_t rows_n = size_t(shape.batch) * shape.seq * shape.kv_dim;
  const size_t joined_n = size_t(shape.batch) * (shape.prefix + shape.seq) * shape.kv_dim;
  for (kernels::DType type : {kernels::DType::f16, kernels::DType::bf16}) {
    const bool bf16 = type == kernels::DType::bf16;
    const std::string name = bf16 ? "bf16" : "fp16";
    CAPTURE(name);
    const double u = std::ldexp(1.0, bf16 ? -8 : -11);
    auto to16 = [&](const std::vector<float>& values) {
      std::vector<uint16_t> bits(values.size());
      for (size_t i = 0; i < values.size(); i++) bits[i] = bf16 ? float_to_bf16(values[i]) : float_to_half(values[i]);
      return bits;
    };
    auto from16 = [&](const std::vector<uint16_t>& bits) {
      std::vector<float> values(bits.size());
      for (size_t i = 0; i < bits.size(); i++) values[i] = bf16 ? bf16_to_float(bits[i]) : half_to_float(bits[i]);
      return values;
    };
    auto prefix = test::random_floats(prefix_n, 41, -2, 2), start = test::random_floats(prefix_n, 46, -1, 1);
    std::vector<uint16_t> k = to16(test::random_floats(rows_n, 42, -2, 2)), v = to16(test::random_floats(rows_n, 43));
    std::vector<uint16_t> dk_in = to16(test::random_floats(joined_n, 44)),
                          dv_in = to16(test::random_floats(joined_n, 45));
    Guarded gp = Guarded::of(prefix, "prefix"), gk = Guarded::of_raw(k, "k"), gv = Guarded::of_raw(v, "v");
    Guarded k_out(joined_n * 2, "k_out"), v_out(joined_n * 2, "v_out");
    Guarded gdk_in = Guarded::of_raw(dk_in, "dk_in"), gdv_in = Guarded::of_raw(dv_in, "dv_in");
    Guarded dk(rows_n * 2, "dk"), dv(rows_n * 2, "dv"), d_prefix = Guarded::of(start, "d_prefix");
    double worst_ratio = 0;  // over the layers: the worst |error| / bound of the joined keys/values
    for (uint32_t layer = 0; layer < shape.layers; layer++) {
      CAPTURE(layer);
      context().run([&](vk::Recorder& r) {
        kernels::prefix_kv_concat(r, gp.range(), gk.range(), gv.range(), k_out.range(), v_out.range(), shape, layer,
                                  type);
        kernels::prefix_kv_concat_backward(r, gdk_in.range(), gdv_in.range(), dk.range(), dv.range(), d_prefix.range(),
                                           shape, layer, type);
      });
      std::vector<float> ref_k(joined_n), ref_v(joined_n);
      ref::prefix_kv_concat(prefix.data(), from16(k).data(), from16(v).data(), ref_k.data(), ref_v.data(), shape,
                            layer);
      double worst = 0;
      const std::vector<float> got_k = from16(k_out.read<uint16_t>()), got_v = from16(v_out.read<uint16_t>());
      for (size_t i = 0; i < joined_n; i++)
        for (auto [got, want] : {std::pair{got_k[i], ref_k[i]}, std::pair{got_v[i], ref_v[i]}}) {
          const double bound = u * std::fabs(want) + std::ldexp(1.0, -24);
          worst = std::max(worst, std::fabs(double(got) - want) / bound);
        }
      worst_ratio = std::max(worst_ratio, worst);
      CHECK(worst <= 1.0);
      std::vector<float> ref_dk(rows_n), ref_dv(rows_n), ref_dp = start;
      for (uint32_t earlier = 0; earlier < layer; earlier++)  // d_prefix holds the earlier layers' columns too
        ref::prefix_kv_concat_backward(from16(dk_in).data(), from16(dv_in).data(), ref_dk.data(), ref_dv.data(),
                                       ref_dp.data(), shape, earlier);
      ref::prefix_kv_concat_backward(from16(dk_in).data(), from16(dv_in).data(), ref_dk.data(), ref_dv.data(),
                                     ref_dp.data(), shape, layer);
      test::check_close(from16(dk.read<uint16_t>()), ref_dk, 0, 0, "dk (copies)");
      test::check_close(from16(dv.read<uint16_t>()), ref_dv, 0, 0, "dv (copies)");
      test::check_close(d_prefix.floats(), ref_dp, 1e-12, 1e-6, "d_prefix (fp32)");
    }
    MESSAGE(name << ": prefix_kv_concat's joined keys/values, worst error / (one rounding's bound) " << worst_ratio);
    for (const Guarded* g : {&k_out, &v_out, &dk, &dv, &d_prefix}) CHECK(g->guard_intact());
  }
}
}
