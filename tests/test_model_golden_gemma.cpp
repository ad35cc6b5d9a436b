// Gemma 2/3 parity with transformers itself (tests/reference/hf_gemma_golden.py, pinned versions;
// data in tests/data/golden/hf_gemma_ops.golden.bin): our kernels on the inputs the script fed to
// transformers' own modules and functions, forward and autograd gradients, fp32:
//   Gemma3RMSNorm ((1 + w), weight gradient too), the GeGLU activation (gelu_pytorch_tanh),
//   eager_attention_forward with the library's sliding-window causal mask, scaling
//   query_pre_attn_scalar^-0.5 and logit soft-capping (both attention bodies), and the final
//   logit soft-capping before the mean cross-entropy (Gemma2ForCausalLM).
// Bounds: 1e-5 max-abs on values of order 1 (fp32 vs torch's fp32: measured <= ~1e-6).
#include <doctest/doctest.h>

#include <optional>

#include "engine/kernels/activation.hpp"
#include "engine/kernels/attention.hpp"
#include "engine/kernels/loss.hpp"
#include "engine/kernels/norm.hpp"
#include "tests/golden_file.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"

using namespace vkt;
using test::context;
using test::Guarded;

namespace {

const test::GoldenFile& ops_golden() {
  static const test::GoldenFile golden(test::source_dir() / "tests/data/golden/hf_gemma_ops.golden.bin");
  return golden;
}

std::vector<float> golden_floats(const std::string& name) { return ops_golden()[name].floats(); }

constexpr double golden_max_abs = 1e-5;

void check_golden(const std::vector<float>& actual, const std::string& name) {
  test::check_close(actual, golden_floats(name), 1e-10, golden_max_abs, name + " vs transformers");
}

}  // namespace

TEST_SUITE("model_golden") {

TEST_CASE("gemma golden: Gemma3RMSNorm forward, dx and d_weight") {
  const auto& shape = ops_golden()["rmsnorm.x"].shape;
  uint32_t rows = static_cast<uint32_t>(shape.at(0)), cols = static_cast<uint32_t>(shape.at(1));
  float eps = static_cast<float>(ops_golden()["rmsnorm.eps"].scalar());
  Guarded x = Guarded::of(golden_floats("rmsnorm.x"), "x"), weight = Guarded::of(golden_floats("rmsnorm.weight"), "w");
  Guarded dy = Guarded::of(golden_floats("rmsnorm.dy"), "dy"), y(rows * cols * 4, "y"), rstd(rows * 4, "rstd");
  Guarded dx(rows * cols * 4, "dx"), d_weight = Guarded::of(std::vector<float>(cols, 0.0f), "d_weight");
  Guarded workspace(kernels::rmsnorm_backward_workspace_bytes(rows, cols), "workspace");
  const vk::BufferRange d_weight_range = d_weight.range();
  context().run([&](vk::Recorder& r) {
    kernels::rmsnorm(r, x.range(), weight.range(), y.range(), rstd.range(), rows, cols, eps, 1.0f);
    kernels::rmsnorm_backward(r, dy.range(), x.range(), weight.range(), rstd.range(), dx.range(), &d_weight_range,
                              workspace.range(), rows, cols, false, 1.0f);
  });
  check_golden(y.floats(), "rmsnorm.y");
  check_golden(dx.floats(), "rmsnorm.dx");
  check_golden(d_weight.floats(), "rmsnorm.d_weight");
}

TEST_CASE("gemma golden: GeGLU (gelu_pytorch_tanh) forward and backward") {
  uint32_t n = static_cast<uint32_t>(ops_golden()["geglu.gate"].elements());
  Guarded gate = Guarded::of(golden_floats("geglu.gate"), "gate"), up = Guarded::of(golden_floats("geglu.up"), "up");
  Guarded dh = Guarded::of(golden_floats("geglu.dh"), "dh"), h(n * 4, "h"), d_gate(n * 4, "dg"), d_up(n * 4, "du");
  context().run([&](vk::Recorder& r) {
    kernels::geglu(r, gate.range(), up.range(), h.range(), n);
    kernels::geglu_backward(r, dh.range(), gate.range(), up.range(), d_gate.range(), d_up.range(), n);
  });
  check_golden(h.floats(), "geglu.h");
  check_golden(d_gate.floats(), "geglu.d_gate");
  check_golden(d_up.floats(), "geglu.d_up");
}

TEST_CASE("gemma golden: attention with sliding window, scaling and soft-capping, both bodies") {
  for (const char* disable_direct : {"0", "1"}) {
    for (std::string name : {"attention", "attention_nocap"}) {
      CAPTURE(disable_direct); CAPTURE(name);
      test::ScopedEnv body("VKT_DISABLE_ATTENTION_DIRECT", disable_direct);
      std::vector<int64_t> dims = ops_golden()[name + ".shape"].ints();
      std::vector<double> scalars = ops_golden()[name + ".scale_softcap"].doubles();
      kernels::AttentionShape shape;
      shape.batch = uint32_t(dims[0]), shape.seq_q = shape.seq_kv = uint32_t(dims[1]);
      shape.q_heads = uint32_t(dims[2]), shape.kv_heads = uint32_t(dims[3]), shape.head_dim = uint32_t(dims[4]);
      shape.window = uint32_t(dims[5]);
      shape.scale = float(scalars[0]), shape.softcap = float(scalars[1]);
      size_t q_elements = size_t(shape.batch) * shape.seq_q * shape.q_heads * shape.head_dim;
      size_t kv_elements = size_t(shape.batch) * shape.seq_kv * shape.kv_heads * shape.head_dim;
      size_t stats = size_t(shape.batch) * shape.q_heads * shape.seq_q;
      Guarded q = Guarded::of(golden_floats(name + ".q"), "q"), k = Guarded::of(golden_floats(name + ".k"), "k");
      Guarded v = Guarded::of(golden_floats(name + ".v"), "v"), d_o = Guarded::of(golden_floats(name + ".d_o"), "d_o");
      Guarded o(q_elements * 4, "o"), lse(stats * 4, "lse"), delta(stats * 4, "delta");
      Guarded dq(q_elements * 4, "dq"), dk(kv_elements * 4, "dk"), dv(kv_elements * 4, "dv");
      context().run([&](vk::Recorder& r) {
        kernels::attention_forward(r, q.range(), k.range(), v.range(), o.range(), lse.range(), shape);
        kernels::attention_backward(r, q.range(), k.range(), v.range(), o.range(), d_o.range(), lse.range(),
                                    delta.range(), dq.range(), dk.range(), dv.range(), shape);
      });
      check_golden(o.floats(), name + ".o");
      check_golden(dq.floats(), name + ".dq");
      check_golden(dk.floats(), name + ".dk");
      check_golden(dv.floats(), name + ".dv");
    }
  }
}

TEST_CASE("gemma golden: final logit soft-capping in the fused cross-entropy (loss and dlogits)") {
  const auto& shape = ops_golden()["softcap_ce.logits"].shape;
  uint32_t rows = static_cast<uint32_t>(shape.at(0)), vocab = static_cast<uint32_t>(shape.at(1));
  std::vector<uint32_t> targets;
  for (int64_t target : ops_golden()["softcap_ce.targets"].ints()) targets.push_back(uint32_t(target));
  Guarded logits = Guarded::of(golden_floats("softcap_ce.logits"), "logits");
  Guarded target_buffer = Guarded::of_raw(targets, "targets");
  Guarded weights = Guarded::of(std::vector<float>(rows, 1.0f), "weights");
  Guarded grad_scale = Guarded::of({1.0f / float(rows)}, "grad_scale"), loss(rows * 4, "loss");
  float cap = static_cast<float>(ops_golden()["softcap_ce.cap"].scalar());
  context().run([&](vk::Recorder& r) {
    kernels::cross_entropy(r, logits.range(), target_buffer.range(), weights.range(), grad_scale.range(), loss.range(),
                           rows, vocab, kernels::ignore_target, true, cap);
  });
  double mean = 0;
  for (float value : loss.floats()) mean += value / rows;
  // The mean of 6 losses of order 10 in fp32: ~1e-6 relative.
  CHECK(std::abs(mean - ops_golden()["softcap_ce.loss"].scalar()) <= 1e-5 * std::abs(mean));
  check_golden(logits.floats(), "softcap_ce.dlogits");
}

}  // TEST_SUITE
