// The 16-bit activation storage variants (engine/kernels/act_storage.hpp, shaders/act_storage.glsl)
// of rmsnorm, rope, swiglu/geglu, add/scale/softcap, embedding and cross_entropy: activations
// in fp16 or bf16, arithmetic in fp32. Suite kernels_ops.
//
// The bound, derived once for every case here. Inputs are drawn, then rounded to the 16-bit type,
// so they are exact on both sides and the fp64 reference sees the very values the kernel read.
// The kernel computes in fp32 (relative error ~1e-6, checked tightly by the fp32 tests of each
// op) and rounds each stored output once, to nearest even. A type with p significant bits
// (bf16: 7 stored + 1 implicit = 8; fp16: 10 + 1 = 11) rounds with a relative error of at most
// u = 2^-p: bf16 u = 2^-8 = 3.9e-3, fp16 u = 2^-11 = 4.9e-4. (One ulp in [1, 2) is 2^(1-p); half
// of it is u.) So every stored output must satisfy
//   |out - ref| <= u * |ref| + fp32_slack,
// where fp32_slack (1e-5 x the largest |ref|) covers the fp32 arithmetic before the rounding and
// fp16's subnormal range (absolute spacing 2^-24). On top of the per-element bound, NMSE <= u^2
// (the rounding error is at most u relative; its mean square is about u^2 / 3).
// Backward: the 16-bit gradient is compared with the same bound against the reference, and with
// finite differences of the fp32 op (the double reference at the rounded inputs): NMSE <= u^2.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/base/half.hpp"
#include "engine/kernels/act_storage.hpp"
#include "engine/kernels/activation.hpp"
#include "engine/kernels/attention.hpp"
#include "engine/kernels/elementwise.hpp"
#include "engine/kernels/embedding.hpp"
#include "engine/kernels/loss.hpp"
#include "engine/kernels/norm.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/kernels/rope.hpp"
#include "tests/kernel_harness.hpp"

using namespace vkt;
using kernels::DType;
using test::context;
using test::Guarded;
using test::ScopedEnv;

namespace {

const DType half_types[] = {DType::f16, DType::bf16};

// u = 2^-p, p the significant bits of the type (see the top of this file).
double unit_roundoff(DType type) { return type == DType::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11); }

std::vector<uint16_t> to_bits(const std::vector<float>& values, DType type) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); i++)
    bits[i] = type == DType::bf16 ? float_to_bf16(values[i]) : float_to_half(values[i]);
  return bits;
}

std::vector<float> from_bits(const std::vector<uint16_t>& bits, DType type) {
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); i++)
    values[i] = type == DType::bf16 ? bf16_to_float(bits[i]) : half_to_float(bits[i]);
  return values;
}

// Values drawn uniformly in [low, high] and rounded to `type` (exact in both the kernel and the reference).
std::vector<float> random_rounded(size_t n, uint32_t seed, DType type, float low = -1, float high = 1) {
  return from_bits(to_bits(test::random_floats(n, seed, low, high), type), type);
}

Guarded upload16(const std::vector<float>& values, DType type, const std::string& name) {
  return Guarded::of_raw(to_bits(values, type), name);
}

std::vector<float> read16(const Guarded& buffer, DType type) { return from_bits(buffer.read<uint16_t>(), type); }

// The bound of the top of the file, element by element, and the NMSE.
void check_rounded(const std::vector<float>& actual, const std::vector<float>& expected, DType type,
                   const std::string& what) {
  CAPTURE(what);
  REQUIRE(actual.size() == expected.size());
  double u = unit_roundoff(type), largest = 0;
  for (float value : expected) largest = std::max(largest, double(std::fabs(value)));
  double slack = 1e-5 * largest, worst = 0;
  size_t worst_index = 0;
  for (size_t i = 0; i < actual.size(); i++) {
    REQUIRE(std::isfinite(actual[i]));
    double excess = std::fabs(double(actual[i]) - expected[i]) - (u * std::fabs(expected[i]) + slack);
    if (excess > worst) worst = excess, worst_index = i;
  }
  CAPTURE(worst_index);
  CAPTURE(actual[worst_index]);
  CAPTURE(expected[worst_index]);
  CHECK(worst == 0.0);
  test::check_close(actual, expected, u * u, u * largest + slack, what);
}

const char* type_name(DType type) { return kernels::dtype_name(type); }

}  // namespace

TEST_SUITE("kernels_ops") {

TEST_CASE("rmsnorm: fp16/bf16 activations, forward and backward within the 16-bit bound") {
  struct Shape {
    uint32_t rows, cols;
  };
  for (DType type : half_types)
    for (Shape shape : {Shape{1, 7}, Shape{5, 33}, Shape{300, 130}}) {
      CAPTURE(type_name(type));
      CAPTURE(shape.rows);
      CAPTURE(shape.cols);
      float eps = 1e-5f;
      size_t n = size_t(shape.rows) * shape.cols;
      auto x = random_rounded(n, 71, type, -2, 2), dy = random_rounded(n, 73, type);
      auto dx_initial = random_rounded(n, 74, type);
      auto weight = test::random_floats(shape.cols, 72, 0.5f, 1.5f);
      Guarded x_buffer = upload16(x, type, "x"), dy_buffer = upload16(dy, type, "dy");
      Guarded weight_buffer = Guarded::of(weight, "weight"), y(n * 2, "y"), rstd(shape.rows * 4, "rstd");
      Guarded dx(n * 2, "dx"), dx_accumulated = upload16(dx_initial, type, "dx accumulated");
      Guarded d_weight = Guarded::of(std::vector<float>(shape.cols, 0.0f), "d_weight");
      Guarded workspace(kernels::rmsnorm_backward_workspace_bytes(shape.rows, shape.cols), "workspace");
      const vk::BufferRange d_weight_range = d_weight.range();
      context().run([&](vk::Recorder& r) {
        kernels::rmsnorm(r, x_buffer.range(), weight_buffer.range(), y.range(), rstd.range(), shape.rows, shape.cols,
                         eps, 0.0f, type);
        kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(),
                                  dx.range(), &d_weight_range, workspace.range(), shape.rows, shape.cols, false, 0.0f,
                                  type);
        kernels::rmsnorm_backward(r, dy_buffer.range(), x_buffer.range(), weight_buffer.range(), rstd.range(),
                                  dx_accumulated.range(), nullptr, workspace.range(), shape.rows, shape.cols, true,
                                  0.0f, type);
      });
      std::vector<float> expected(n), expected_rstd(shape.rows), expected_dx(n), expected_d_weight(shape.cols, 0.0f);
      std::vector<float> expected_accumulated = dx_initial;
      ref::rmsnorm(x.data(), weight.data(), expected.data(), expected_rstd.data(), shape.rows, shape.cols, eps);
      ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_dx.data(), expected_d_weight.data(),
                            shape.rows, shape.cols, eps);
      ref::rmsnorm_backward(dy.data(), x.data(), weight.data(), expected_accumulated.data(), nullptr, shape.rows,
                            shape.cols, eps, true);
      check_rounded(read16(y, type), expected, type, "y");
      // rstd and d_weight are fp32 outputs of exact 16-bit inputs: the fp32 tolerances of test_kernels_norm.
      test::check_close(rstd.floats(), expected_rstd, 1e-12, 1e-6, "rstd (fp32)");
      test::check_close(d_weight.floats(), expected_d_weight, 1e-11, 1e-4, "d_weight (fp32)");
      check_rounded(read16(dx, type), expected_dx, type, "dx");
      // dx += result: the sum is formed in fp32 from the stored dx and rounded once.
      check_rounded(read16(dx_accumulated, type), expected_accumulated, type, "dx accumulated");
      for (const Guarded* buffer : {&y, &rstd, &dx, &dx_accumulated, &d_weight}) CHECK(buffer->guard_intact());
      if (n > 2500) continue;
      auto loss = [&](const std::vector<float>& probe) {
        std::vector<float> out(n);
        ref::rmsnorm(probe.data(), weight.data(), out.data(), nullptr, shape.rows, shape.cols, eps);
        return test::dot(out, dy);
      };
      double u = unit_roundoff(type);
      test::check_gradient(loss, x, read16(dx, type), 1e-2f, u * u, 200, "dx vs finite differences of the fp32 op");
    }
}

TEST_CASE("rope: fp16/bf16 activations, forward and backward within the 16-bit bound") {
  for (DType type : half_types) {
    CAPTURE(type_name(type));
    uint32_t rows = 9, heads = 3, head_dim = 16;
    size_t n = size_t(rows) * heads * head_dim;
    auto x = random_rounded(n, 81, type, -2, 2), dy = random_rounded(n, 82, type);
    std::vector<uint32_t> positions(rows);
    for (uint32_t r = 0; r < rows; r++) positions[r] = (r * 37) % 11;  // packed documents restart
    auto inv_freq = kernels::rope_inv_freq(head_dim, 10000.0);
    Guarded x_buffer = upload16(x, type, "x"), dy_buffer = upload16(dy, type, "dy");
    Guarded positions_buffer = Guarded::of_raw(positions, "positions"), freq = Guarded::of(inv_freq, "inv_freq");
    Guarded y(n * 2, "y"), dx(n * 2, "dx");
    context().run([&](vk::Recorder& r) {
      kernels::rope(r, x_buffer.range(), y.range(), positions_buffer.range(), freq.range(), rows, heads, head_dim, 1.0f,
                    type);
      kernels::rope_backward(r, dy_buffer.range(), dx.range(), positions_buffer.range(), freq.range(), rows, heads,
                             head_dim, 1.0f, type);
    });
    std::vector<float> expected(n), expected_dx(n);
    ref::rope(x.data(), expected.data(), positions.data(), inv_freq.data(), rows, heads, head_dim);
    ref::rope_backward(dy.data(), expected_dx.data(), positions.data(), inv_freq.data(), rows, heads, head_dim);
    check_rounded(read16(y, type), expected, type, "y");
    check_rounded(read16(dx, type), expected_dx, type, "dx");
    CHECK(y.guard_intact());
    CHECK(dx.guard_intact());
    auto loss = [&](const std::vector<float>& probe) {
      std::vector<float> out(n);
      ref::rope(probe.data(), out.data(), positions.data(), inv_freq.data(), rows, heads, head_dim);
      return test::dot(out, dy);
    };
    double u = unit_roundoff(type);
    test::check_gradient(loss, x, read16(dx, type), 1e-2f, u * u, 200, "dx vs finite differences of the fp32 op");
  }
}

TEST_CASE("swiglu: fp16/bf16 activations (swiglu and geglu), forward and backward within the 16-bit bound") {
  for (DType type : half_types)
    for (bool gelu : {false, true}) {
      CAPTURE(type_name(type));
      CAPTURE(gelu);
      uint32_t n = 1031;
      auto gate = random_rounded(n, 91, type, -4, 4), up = random_rounded(n, 92, type, -2, 2);
      auto dh = random_rounded(n, 93, type);
      Guarded gate_buffer = upload16(gate, type, "gate"), up_buffer = upload16(up, type, "up");
      Guarded dh_buffer = upload16(dh, type, "dh"), h(n * 2, "h"), d_gate(n * 2, "d_gate"), d_up(n * 2, "d_up");
      context().run([&](vk::Recorder& r) {
        if (gelu) {
          kernels::geglu(r, gate_buffer.range(), up_buffer.range(), h.range(), n, type);
          kernels::geglu_backward(r, dh_buffer.range(), gate_buffer.range(), up_buffer.range(), d_gate.range(),
                                  d_up.range(), n, type);
        } else {
          kernels::swiglu(r, gate_buffer.range(), up_buffer.range(), h.range(), n, type);
          kernels::swiglu_backward(r, dh_buffer.range(), gate_buffer.range(), up_buffer.range(), d_gate.range(),
                                   d_up.range(), n, type);
        }
      });
      auto forward = gelu ? ref::geglu : ref::swiglu;
      std::vector<float> expected(n), expected_d_gate(n), expected_d_up(n);
      forward(gate.data(), up.data(), expected.data(), n);
      (gelu ? ref::geglu_backward : ref::swiglu_backward)(dh.data(), gate.data(), up.data(), expected_d_gate.data(),
                                                          expected_d_up.data(), n);
      check_rounded(read16(h, type), expected, type, "h");
      check_rounded(read16(d_gate, type), expected_d_gate, type, "d_gate");
      check_rounded(read16(d_up, type), expected_d_up, type, "d_up");
      for (const Guarded* buffer : {&h, &d_gate, &d_up}) CHECK(buffer->guard_intact());
      double u = unit_roundoff(type);
      for (bool probe_gate : {true, false}) {  // finite differences of the fp32 op in gate, then in up
        auto loss = [&](const std::vector<float>& probe) {
          std::vector<float> out(n);
          forward(probe_gate ? probe.data() : gate.data(), probe_gate ? up.data() : probe.data(), out.data(), n);
          return test::dot(out, dh);
        };
        test::check_gradient(loss, probe_gate ? gate : up, read16(probe_gate ? d_gate : d_up, type), 1e-2f, u * u, 200,
                             probe_gate ? "d_gate vs finite differences" : "d_up vs finite differences");
      }
    }
}

TEST_CASE("add: fp16/bf16 activations (add, axpby, scale, softcap) within the 16-bit bound") {
  for (DType type : half_types) {
    CAPTURE(type_name(type));
    uint32_t n = 1031;
    auto a = random_rounded(n, 101, type, -3, 3), b = random_rounded(n, 102, type, -3, 3);
    Guarded a_buffer = upload16(a, type, "a"), b_buffer = upload16(b, type, "b"), sum(n * 2, "sum");
    Guarded scaled = upload16(a, type, "scaled"), capped = upload16(a, type, "capped");
    Guarded residual = upload16(b, type, "residual");
    context().run([&](vk::Recorder& r) {
      kernels::add(r, a_buffer.range(), b_buffer.range(), sum.range(), n, type);
      kernels::scale(r, scaled.range(), n, 0.37f, nullptr, type);
      kernels::softcap(r, capped.range(), n, 1.5f, type);
      kernels::axpby(r, a_buffer.range(), residual.range(), n, 0.75f, 1.0f, type);  // the residual stream's add
    });
    std::vector<float> expected_sum(n), expected_scaled = a, expected_capped = a;
    ref::add(a.data(), b.data(), expected_sum.data(), n);
    ref::scale(expected_scaled.data(), n, 0.37f);
    ref::softcap(expected_capped.data(), n, 1.5f);
    std::vector<float> expected_residual = b;
    ref::axpby(a.data(), expected_residual.data(), n, 0.75f, 1.0f);
    check_rounded(read16(sum, type), expected_sum, type, "a + b");
    check_rounded(read16(scaled, type), expected_scaled, type, "scale");
    check_rounded(read16(capped, type), expected_capped, type, "softcap");
    check_rounded(read16(residual, type), expected_residual, type, "axpby");
    for (const Guarded* buffer : {&sum, &scaled, &capped, &residual}) CHECK(buffer->guard_intact());
  }
}

TEST_CASE("embedding: fp16/bf16 output rows are the table's values rounded once; backward reads 16-bit d_out") {
  for (DType type : half_types)
    for (DType table_type : {DType::f32, DType::bf16}) {
      CAPTURE(type_name(type));
      CAPTURE(type_name(table_type));
      uint32_t tokens = 23, vocab = 11, hidden = 37;
      auto table = test::random_floats(size_t(vocab) * hidden, 111, -2, 2);
      std::vector<uint32_t> ids(tokens);
      for (uint32_t t = 0; t < tokens; t++) ids[t] = (t * 7 + 3) % vocab;
      Guarded table_buffer =
          table_type == DType::f32 ? Guarded::of(table, "table") : upload16(table, DType::bf16, "table");
      if (table_type == DType::bf16) table = from_bits(to_bits(table, DType::bf16), DType::bf16);
      Guarded ids_buffer = Guarded::of_raw(ids, "ids"), out(size_t(tokens) * hidden * 2, "out");
      context().run([&](vk::Recorder& r) {
        kernels::embedding(r, ids_buffer.range(), table_buffer.range(), table_type, out.range(), tokens, vocab, hidden,
                           type);
      });
      // A copy rounded once to nearest even: bit-exact with the host's conversion.
      std::vector<float> gathered(size_t(tokens) * hidden);
      ref::embedding(ids.data(), table.data(), gathered.data(), tokens, vocab, hidden);
      CHECK(out.read<uint16_t>() == to_bits(gathered, type));
      CHECK(out.guard_intact());
    }
  for (DType type : half_types) {
    CAPTURE(type_name(type));
    uint32_t tokens = 29, vocab = 13, hidden = 37;
    std::vector<uint32_t> ids(tokens);
    for (uint32_t t = 0; t < tokens; t++) ids[t] = (t * 5 + 1) % vocab;
    auto d_out = random_rounded(size_t(tokens) * hidden, 112, type);
    Guarded ids_buffer = Guarded::of_raw(ids, "ids"), d_out_buffer = upload16(d_out, type, "d_out");
    Guarded d_table = Guarded::of(std::vector<float>(size_t(vocab) * hidden, 0.0f), "d_table");
    Guarded workspace(kernels::embedding_backward_workspace_bytes(tokens, vocab), "workspace");
    context().run([&](vk::Recorder& r) {
      kernels::embedding_backward(r, ids_buffer.range(), d_out_buffer.range(), d_table.range(), workspace.range(),
                                  tokens, vocab, hidden, type);
    });
    std::vector<float> expected(size_t(vocab) * hidden, 0.0f);
    ref::embedding_backward(ids.data(), d_out.data(), expected.data(), tokens, vocab, hidden);
    // d_table is an fp32 weight gradient: sums of at most 3 exact 16-bit values in fp32.
    test::check_close(d_table.floats(), expected, 1e-12, 1e-6, "d_table (fp32)");
    CHECK(d_table.guard_intact());
  }
}

TEST_CASE("cross_entropy: fp16/bf16 logits; fp32 loss; 16-bit dlogits within the bound") {
  for (DType type : half_types) {
    CAPTURE(type_name(type));
    uint32_t rows = 7, vocab = 517;
    auto logits = random_rounded(size_t(rows) * vocab, 121, type, -6, 6);
    std::vector<uint32_t> targets(rows);
    for (uint32_t r = 0; r < rows; r++) targets[r] = (r * 97 + 5) % vocab;
    targets[3] = kernels::ignore_target;
    std::vector<float> weights(rows, 1.0f);
    weights[5] = 0.5f;
    float grad_scale = 1.0f / 6;
    Guarded logits_buffer = upload16(logits, type, "logits"), targets_buffer = Guarded::of_raw(targets, "targets");
    Guarded weights_buffer = Guarded::of(weights, "weights"), scale = Guarded::of({grad_scale}, "grad_scale");
    Guarded loss(rows * 4, "loss");
    context().run([&](vk::Recorder& r) {
      kernels::cross_entropy(r, logits_buffer.range(), targets_buffer.range(), weights_buffer.range(), scale.range(),
                             loss.range(), rows, vocab, kernels::ignore_target, true, 0.0f, type);
    });
    std::vector<float> expected_loss(rows), expected_dlogits(logits.size());
    ref::cross_entropy(logits.data(), targets.data(), weights.data(), grad_scale, expected_loss.data(),
                       expected_dlogits.data(), rows, vocab);
    // The loss is fp32 from exact 16-bit logits: online softmax in fp32 over 517 values, ~1e-6 relative.
    test::check_close(loss.floats(), expected_loss, 1e-12, 2e-5, "loss (fp32)");
    auto dlogits = read16(logits_buffer, type);
    check_rounded(dlogits, expected_dlogits, type, "dlogits");
    CHECK(loss.guard_intact());
    CHECK(logits_buffer.guard_intact());
    auto total_loss = [&](const std::vector<float>& probe) {
      std::vector<float> row_loss(rows);
      ref::cross_entropy(probe.data(), targets.data(), weights.data(), grad_scale, row_loss.data(), nullptr, rows,
                         vocab);
      double total = 0;
      for (float value : row_loss) total += value;
      return total * grad_scale;
    };
    double u = unit_roundoff(type);
    test::check_gradient(total_loss, logits, dlogits, 1e-2f, u * u, 300,
                         "dlogits vs finite differences of the fp32 op");
  }
}

TEST_CASE("attention: fp16/bf16 q, k, v, o and gradients; fp32 lse and online softmax; both bodies") {
  // GQA (4 q heads over 2 kv heads), 2 packed sequences, head_dim 12 (not a multiple of 8).
  kernels::AttentionShape shape;
  shape.batch = 2, shape.seq_q = shape.seq_kv = 7, shape.q_heads = 4, shape.kv_heads = 2, shape.head_dim = 12;
  shape.scale = 1.0f / std::sqrt(12.0f);
  size_t q_count = size_t(shape.batch) * shape.seq_q * shape.q_heads * shape.head_dim;
  size_t kv_count = size_t(shape.batch) * shape.seq_kv * shape.kv_heads * shape.head_dim;
  size_t stats = size_t(shape.batch) * shape.q_heads * shape.seq_q;
  for (const char* disable_direct : {"0", "1"})
    for (DType type : half_types) {
      CAPTURE(disable_direct);
      CAPTURE(type_name(type));
      ScopedEnv body("VKT_DISABLE_ATTENTION_DIRECT", disable_direct);
      auto q = random_rounded(q_count, 131, type, -2, 2), d_o = random_rounded(q_count, 134, type);
      auto k = random_rounded(kv_count, 132, type, -2, 2), v = random_rounded(kv_count, 133, type);
      Guarded q_buffer = upload16(q, type, "q"), k_buffer = upload16(k, type, "k"), v_buffer = upload16(v, type, "v");
      Guarded d_o_buffer = upload16(d_o, type, "d_o"), o(q_count * 2, "o"), lse(stats * 4, "lse");
      Guarded delta(stats * 4, "delta"), dq(q_count * 2, "dq"), dk(kv_count * 2, "dk"), dv(kv_count * 2, "dv");
      context().run([&](vk::Recorder& r) {
        kernels::attention_forward(r, q_buffer.range(), k_buffer.range(), v_buffer.range(), o.range(), lse.range(),
                                   shape, nullptr, nullptr, nullptr, type);
      });
      context().run([&](vk::Recorder& r) {
        kernels::attention_backward(r, q_buffer.range(), k_buffer.range(), v_buffer.range(), o.range(),
                                    d_o_buffer.range(), lse.range(), delta.range(), dq.range(), dk.range(), dv.range(),
                                    shape, nullptr, nullptr, type);
      });
      std::vector<float> expected_o(q_count), expected_lse(stats), expected_dq(q_count), expected_dk(kv_count),
          expected_dv(kv_count);
      ref::attention_forward(q.data(), k.data(), v.data(), expected_o.data(), expected_lse.data(), shape);
      check_rounded(read16(o, type), expected_o, type, "o");
      // lse is fp32 from exact 16-bit inputs: the fp32 attention tests' tolerance.
      test::check_close(lse.floats(), expected_lse, 1e-12, 1e-5, "lse (fp32)");
      // The backward reads the 16-bit o the forward stored (delta = rowsum(d_o ∘ o)), so its
      // reference is the exact gradient plus that o's rounding: delta's relative error <= u, and
      // dS = P ∘ (dP - delta) carries it into dq, dk (dv does not read delta). The bound doubles u
      // for dq and dk: one rounding of the stored o, one of the stored result.
      ref::attention_backward(q.data(), k.data(), v.data(), d_o.data(), expected_dq.data(), expected_dk.data(),
                              expected_dv.data(), shape);
      check_rounded(read16(dv, type), expected_dv, type, "dv");
      double u = unit_roundoff(type);
      for (auto [name, actual, expected] :
           {std::tuple{"dq", read16(dq, type), expected_dq}, std::tuple{"dk", read16(dk, type), expected_dk}}) {
        double largest = 0, worst = 0;
        for (float value : expected) largest = std::max(largest, double(std::fabs(value)));
        for (size_t i = 0; i < actual.size(); i++)
          worst = std::max(worst, std::fabs(double(actual[i]) - expected[i]) - 2 * u * std::fabs(expected[i]));
        const std::string what = name;
        CAPTURE(what);
        CHECK(worst <= 2 * u * largest);
        test::check_close(actual, expected, 4 * u * u, 4 * u * largest, what);
      }
      for (const Guarded* buffer : {&o, &lse, &dq, &dk, &dv}) CHECK(buffer->guard_intact());
      auto loss_q = [&](const std::vector<float>& probe) {
        std::vector<float> out(q_count);
        ref::attention_forward(probe.data(), k.data(), v.data(), out.data(), nullptr, shape);
        return test::dot(out, d_o);
      };
      test::check_gradient(loss_q, q, read16(dq, type), 1e-2f, 4 * u * u, 100,
                           "dq vs finite differences of the fp32 op");
      auto loss_v = [&](const std::vector<float>& probe) {
        std::vector<float> out(q_count);
        ref::attention_forward(q.data(), k.data(), probe.data(), out.data(), nullptr, shape);
        return test::dot(out, d_o);
      };
      test::check_gradient(loss_v, v, read16(dv, type), 1e-2f, u * u, 100, "dv vs finite differences of the fp32 op");
    }
}

}  // TEST_SUITE
