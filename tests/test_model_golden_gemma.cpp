// Gemma 2/3 parity with transformers itself (tests/reference/hf_gemma_golden.py, pinned versions;
// data in tests/data/golden/hf_gemma_ops.golden.bin): our kernels on the inputs the script fed to
// transformers' own modules and functions, forward and autograd gradients, fp32:
//   Gemma3RMSNorm ((1 + w), weight gradient too), the GeGLU activation (gelu_pytorch_tanh),
//   eager_attention_forward with the library's sliding-window causal mask, scaling
//   query_pre_attn_scalar^-0.5 and logit soft-capping (both attention bodies), and the final
//   logit soft-capping before the mean cross-entropy (Gemma2ForCausalLM).
// Bounds: 1e-5 max-abs on values of order 1 (fp32 vs torch's fp32: measured <= ~1e-6).
// And the whole tiny Gemma3ForCausalLM (tests/data/hf/gemma3: one sliding and one global layer,
// window 5 < 12 tokens, GQA, tied embeddings) with its PEFT adapter (r=4 on all seven linears,
// nonzero B): logits max-abs <= 1e-4, loss relative <= 1e-5, every LoRA gradient relative error
// <= 1e-3 (fp32), with and without gradient checkpointing; 20 greedy tokens with the KV cache
// (24 positions over a window of 5) equal transformers' generate(). The same for a tiny
// Gemma2ForCausalLM (no q/k norms; attention soft-capping 50, final logit soft-capping 30).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "engine/base/error.hpp"
#include "engine/base/half.hpp"
#include "engine/kernels/activation.hpp"
#include "engine/kernels/attention.hpp"
#include "engine/kernels/loss.hpp"
#include "engine/kernels/norm.hpp"
#include "engine/kernels/optimizer.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/config.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/session.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/step_runner.hpp"
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

// ||actual - expected|| / ||expected||.
double relative_error(const std::vector<float>& actual, const std::vector<float>& expected) {
  test::Comparison comparison = test::compare(actual, expected);
  return comparison.has_non_finite ? INFINITY : std::sqrt(comparison.nmse);
}

// The golden batch (input_ids, labels with -100) in our layout: row t predicts ids[t + 1] with
// weight 1 unless that label is -100; the loss is the mean over predicted tokens, as transformers'.
train::MicroBatch golden_batch(const test::GoldenFile& golden) {
  const auto& ids = golden["input_ids"];
  train::MicroBatch b;
  b.batch = uint32_t(ids.shape[0]), b.seq_len = uint32_t(ids.shape[1]);
  const uint32_t rows = b.batch * b.seq_len;
  std::vector<int64_t> id_values = ids.ints(), labels = golden["labels"].ints();
  b.ids.resize(rows), b.targets.assign(rows, 0), b.positions.resize(rows), b.segments.assign(rows, 0);
  b.weights.assign(rows, 0.0f);
  for (uint32_t i = 0; i < rows; i++) {
    b.ids[i] = uint32_t(id_values[i]);
    b.positions[i] = i % b.seq_len;
    if ((i + 1) % b.seq_len != 0 && labels[i + 1] >= 0) {
      b.targets[i] = uint32_t(labels[i + 1]);
      b.weights[i] = 1.0f;
      b.weight_sum += 1;
    }
  }
  b.tokens = rows;
  return b;
}

// Uploads the batch and 1/Σw, clears every gradient, runs forward + backward; returns the mean loss.
double forward_backward(model::ModelSession& session, const train::MicroBatch& b) {
  auto& ctx = context();
  auto& buffers = *session.buffers;
  train::upload_micro_batch(ctx, buffers, b);
  kernels::StepState state;
  state.spare[0] = static_cast<float>(1.0 / b.weight_sum);
  kernels::write_step_state(ctx, buffers.buffer("step_state"), state);
  ctx.run([&](vk::Recorder& r) {
    for (const auto& spec : session.plan.buffers)
      if (spec.category == vk::Category::gradients || spec.name == "loss.step") r.fill(buffers.range(spec.name));
  });
  ctx.run([&](vk::Recorder& r) {
    session.transformer->record_forward(r, true, true);
    session.transformer->record_backward(r);
  });
  float loss_sum = 0;
  ctx.download(buffers.buffer("loss.step"), &loss_sum, 0, 4);
  return loss_sum / b.weight_sum;
}

std::filesystem::path hf_data_dir() { return test::source_dir() / "tests/data/hf"; }
std::filesystem::path model_golden_path(const std::string& kind) {
  return test::source_dir() / "tests/data/golden" / ("hf_" + kind + ".golden.bin");
}

// A full-finetuning training run of the batch's shape.
spec::RunSettings full_settings(const train::MicroBatch& b, bool checkpointing) {
  spec::RunSettings settings;
  settings.method = spec::Method::full;
  settings.batch = b.batch;
  settings.seq_len = b.seq_len;
  settings.training = true;
  settings.gradient_checkpointing = checkpointing;
  return settings;
}

// Full finetuning of the tiny model (no adapter): the loss and the gradient of every parameter
// transformers trains (its named_parameters: norms with (1 + w), q/k norms, the tied embedding
// with both of its uses) against autograd, relative error <= 1e-3 (fp32; measured ~1e-6); the
// plan lists exactly those gradients, and opening the model allocates exactly the plan.
void check_full(const std::string& kind, bool checkpointing) {
  CAPTURE(kind);
  CAPTURE(checkpointing);
  auto& ctx = context();
  const test::GoldenFile golden(model_golden_path(kind));
  const train::MicroBatch b = golden_batch(golden);
  const vk::LedgerSnapshot before = ctx.ledger().snapshot();
  auto session = model::open_model(ctx, hf_data_dir() / kind, full_settings(b, checkpointing), nullptr);
  const vk::LedgerSnapshot after = ctx.ledger().snapshot();
  for (size_t i = 0; i < vk::category_count; i++) {
    auto category = vk::Category(i);
    if (category == vk::Category::staging) continue;  // transfers come and go
    INFO(vk::category_name(category));
    uint64_t planned = 0;  // the optimizer's table and partial sums are the StepRunner's (external)
    for (const auto& spec : session->plan.buffers)
      if (spec.category == category && !spec.external) planned += spec.bytes;
    CHECK(after.category_current(category) - before.category_current(category) == planned);
  }
  double loss = forward_backward(*session, b), expected_loss = golden["full.loss"].scalar();
  INFO(kind << " full loss " << loss << " vs " << expected_loss);
  CHECK(std::abs(loss - expected_loss) <= 1e-5 * expected_loss);
  size_t compared = 0, expected_count = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& spec : session->plan.buffers) {
    if (spec.category != vk::Category::gradients) continue;
    std::string key = "full.grad." + spec.name.substr(5);  // grad.model.layers.0.input_layernorm.weight
    REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
    double error = relative_error(test::download(session->buffers->buffer(spec.name)), golden[key].floats());
    if (error > worst) worst = error, worst_name = key;
    compared++;
  }
  for (const auto& [name, tensor] : golden.tensors()) expected_count += name.rfind("full.grad.", 0) == 0;
  MESSAGE(kind << std::string(checkpointing ? " (checkpointing)" : "") << " full finetuning: loss relative "
               << std::abs(loss - expected_loss) / expected_loss << ", " << compared
               << " gradients, worst relative error " << worst << " (" << worst_name << ")");
  CHECK(compared == expected_count);
  CHECK(worst <= 1e-3);
}

void check_model(const std::string& kind, bool checkpointing) {
  auto& ctx = context();
  const std::filesystem::path data = test::source_dir() / "tests/data";
  test::GoldenFile golden(data / "golden" / ("hf_" + kind + ".golden.bin"));
  train::MicroBatch b = golden_batch(golden);
  const uint32_t batch = b.batch, seq = b.seq_len, rows = batch * seq;
  spec::RunSettings settings;
  settings.method = spec::Method::lora;
  settings.batch = batch;
  settings.seq_len = seq;
  settings.training = true;
  settings.gradient_checkpointing = checkpointing;
  const std::filesystem::path adapter = data / "hf" / (kind + "_adapter");
  model::LoraSettings lora = model::load_adapter_config(adapter).settings;
  auto session = model::open_model(ctx, data / "hf" / kind, settings, &lora);
  auto& buffers = *session->buffers;
  model::load_adapter_weights(ctx, buffers, session->plan.shape, lora, adapter);
  ctx.upload(buffers.buffer("input.ids"), b.ids.data(), 0, rows * 4);
  ctx.upload(buffers.buffer("input.positions"), b.positions.data(), 0, rows * 4);
  ctx.upload(buffers.buffer("input.segments"), b.segments.data(), 0, rows * 4);

  const uint32_t vocab = uint32_t(session->config.vocab_size);
  vk::Buffer logits = ctx.allocate(uint64_t(rows) * vocab * 4, vk::Category::workspace, "golden.logits");
  ctx.run([&](vk::Recorder& r) { session->transformer->record_logits(r, logits.range()); });
  test::check_close(test::download(logits), golden["logits"].floats(), 1e-10, 1e-4, kind + " logits vs transformers");

  double loss = forward_backward(*session, b), expected_loss = golden["loss"].scalar();
  INFO(kind << " loss " << loss << " vs " << expected_loss);
  CHECK(std::abs(loss - expected_loss) <= 1e-5 * expected_loss);
  size_t compared = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& spec : session->plan.buffers) {
    if (spec.category != vk::Category::gradients) continue;
    std::string key = spec.name.substr(5) + ".weight.grad";  // grad.model.layers.0.self_attn.q_proj.lora_A
    REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
    double error = relative_error(test::download(buffers.buffer(spec.name)), golden[key].floats());
    if (error > worst) worst = error, worst_name = key;
    compared++;
  }
  INFO(kind << ": " << compared << " LoRA gradients, worst relative error " << worst << " (" << worst_name << ")");
  CHECK(compared == 2 * 7 * session->plan.shape.layers);
  CHECK(worst <= 1e-3);
}

}  // namespace

TEST_SUITE("model_golden") {

TEST_CASE("gemma golden: tiny Gemma3ForCausalLM + PEFT LoRA: logits, loss, LoRA gradients (checkpointing too)") {
  check_model("gemma3", false);
  check_model("gemma3", true);
}

// Gemma 2: no q/k norms; attention soft-capping 50 and final logit soft-capping 30.
TEST_CASE("gemma golden: tiny Gemma2ForCausalLM + PEFT LoRA: logits, loss, LoRA gradients (checkpointing too)") {
  check_model("gemma2", false);
  check_model("gemma2", true);
}

TEST_CASE(
    "gemma golden: full finetuning of Gemma3ForCausalLM and Gemma2ForCausalLM, every gradient (checkpointing "
    "too)") {
  for (const char* kind : {"gemma3", "gemma2"}) {
    check_full(kind, false);
    check_full(kind, true);
  }
}

// Three full-finetuning AdamW steps (weight decay 0.1 on Trainer's decay list, the global norm
// clipped to 1, lr 1e-2) on the golden batch against torch.optim.AdamW with Trainer's two groups:
// each step's loss and pre-clip gradient norm, and the final norm weights (undecayed: decaying
// them would move them by ~3e-3 relative) and a decayed linear weight, relative <= 1e-4.
void check_adamw(const std::string& kind) {
  CAPTURE(kind);
  auto& ctx = context();
  const test::GoldenFile golden(model_golden_path(kind));
  const train::MicroBatch b = golden_batch(golden);
  auto session = model::open_model(ctx, hf_data_dir() / kind, full_settings(b, false), nullptr);
  const std::vector<double> adamw = golden["full.adamw.settings"].doubles();
  train::OptimizerSettings optimizer;
  optimizer.weight_decay = adamw.at(1);
  optimizer.max_grad_norm = adamw.at(2);
  train::StepRunner runner(ctx, *session, optimizer);
  runner.reset();
  const std::vector<double> losses = golden["full.adamw.loss"].doubles(),
                            norms = golden["full.adamw.grad_norm"].doubles();
  for (size_t step = 0; step < losses.size(); step++) {
    runner.step(int64_t(step) + 1, adamw.at(0), {b});
    double loss = runner.take_loss_sum(), norm = runner.device_state().grad_norm;
    INFO("step " << step << ": loss " << loss << " vs " << losses[step] << ", grad norm " << norm << " vs "
                 << norms[step]);
    CHECK(std::fabs(loss - losses[step]) / losses[step] <= 1e-4);
    CHECK(std::fabs(norm - norms[step]) / norms[step] <= 1e-4);
  }
  double worst = 0;
  std::string worst_name;
  size_t compared = 0;
  for (const auto& [name, tensor] : golden.tensors()) {
    if (name.rfind("full.adamw.final.", 0) != 0) continue;
    double error = relative_error(test::download(session->buffers->buffer(name.substr(17))), tensor.floats());
    if (error > worst) worst = error, worst_name = name;
    compared++;
  }
  MESSAGE(kind << " " << losses.size() << " AdamW steps: " << compared << " final weights, worst relative error "
               << worst << " (" << worst_name << ")");
  CHECK(compared >= 10);  // 4 norms per layer (+ q/k norms), the final norm, k_proj
  CHECK(worst <= 1e-4);
}

TEST_CASE("gemma golden: 3 full-finetuning AdamW steps (weight decay, clipping) match torch + Trainer's groups") {
  check_adamw("gemma3");
  check_adamw("gemma2");
}

// Weight decay reaches exactly the parameters transformers' Trainer decays: not the norms (q_norm
// and k_norm included) nor biases.
TEST_CASE("gemma golden: full finetuning decays the parameters Trainer.get_decay_parameter_names names") {
  for (std::string kind : {"gemma3", "gemma2"}) {
    CAPTURE(kind);
    test::GoldenFile golden(test::source_dir() / "tests/data/golden" / ("hf_" + kind + ".golden.bin"));
    const auto& bytes = golden["full.decay_names"].data;
    std::vector<std::string> names = nlohmann::json::parse(bytes.begin(), bytes.end());
    std::vector<std::string> expected, decayed;
    size_t trainable = 0;
    for (const auto& [name, tensor] : golden.tensors()) {
      if (name.rfind("full.grad.", 0) != 0) continue;
      trainable++;
      std::string parameter = name.substr(10);
      if (!train::excluded_from_weight_decay(parameter)) decayed.push_back(parameter);
      // The list also names the tied lm_head.weight; the optimizer's groups come from
      // named_parameters(), which lists that tensor once, as model.embed_tokens.weight.
      if (std::find(names.begin(), names.end(), parameter) != names.end()) expected.push_back(parameter);
    }
    CHECK(decayed.size() < trainable);  // the norms are left out
    CHECK(decayed == expected);         // both sorted (std::map order, Python's sorted)
  }
  // Gemma has no biases: Qwen2's q/k/v biases go undecayed as well, LoRA matrices are decayed.
  CHECK(train::excluded_from_weight_decay("model.layers.0.self_attn.q_proj.bias"));
  CHECK_FALSE(train::excluded_from_weight_decay("model.layers.0.self_attn.q_proj.lora_A"));
}

// transformers scales Gemma's embeddings by sqrt(hidden) rounded to the weight's dtype: a bf16
// checkpoint run in its config dtype uses 6.9375 for sqrt(48) = 6.928. Our fp32 product of a bf16
// table value and that scale is exact, so rounded to bf16 it must equal transformers' bf16 output
// bit for bit, whatever --dtype or method the run uses; the unrounded scale changes 23% of them.
TEST_CASE("gemma golden: the embedding scale of a bf16 checkpoint is rounded as transformers rounds it") {
  auto& ctx = context();
  const std::filesystem::path data = test::source_dir() / "tests/data";
  test::GoldenFile golden(data / "golden/hf_gemma3_bf16.golden.bin");
  const auto& ids = golden["embed.ids"];
  const uint32_t batch = uint32_t(ids.shape[0]), seq = uint32_t(ids.shape[1]), rows = batch * seq;
  std::vector<uint32_t> input, positions(rows), segments(rows, 0);
  for (int64_t id : ids.ints()) input.push_back(uint32_t(id));
  for (uint32_t i = 0; i < rows; i++) positions[i] = i % seq;
  const std::vector<float> expected = golden["embed.out_bf16"].floats();
  struct Case {
    spec::Method method;
    kernels::DType dtype;
  };
  for (Case c : {Case{spec::Method::lora, kernels::DType::f32}, Case{spec::Method::lora, kernels::DType::bf16},
                 Case{spec::Method::full, kernels::DType::f32}}) {
    const std::string run = std::string(spec::method_name(c.method)) + " " + kernels::dtype_name(c.dtype);
    CAPTURE(run);
    spec::RunSettings settings;
    settings.method = c.method;
    settings.dtype = c.dtype;
    if (c.dtype == kernels::DType::bf16) settings.base_format = kernels::WeightFormat::bf16;
    settings.batch = batch;
    settings.seq_len = seq;
    settings.training = true;
    model::LoraSettings lora;
    lora.targets = {spec::Module::q_proj};
    auto session =
        model::open_model(ctx, data / "hf/gemma3_bf16", settings, c.method == spec::Method::full ? nullptr : &lora);
    auto& buffers = *session->buffers;
    ctx.upload(buffers.buffer("input.ids"), input.data(), 0, rows * 4);
    ctx.upload(buffers.buffer("input.positions"), positions.data(), 0, rows * 4);
    ctx.upload(buffers.buffer("input.segments"), segments.data(), 0, rows * 4);
    vk::Buffer logits = ctx.allocate(uint64_t(rows) * session->config.vocab_size * 4, vk::Category::workspace, "l");
    ctx.run([&](vk::Recorder& r) { session->transformer->record_logits(r, logits.range()); });
    std::vector<float> scaled = test::download(buffers.buffer("act.layers.0.input"));
    size_t mismatches = 0;
    for (size_t i = 0; i < expected.size(); i++) mismatches += bf16_to_float(float_to_bf16(scaled[i])) != expected[i];
    CHECK(mismatches == 0);
  }
  // The fp32 reading (transformers loading with dtype=float32) uses the unrounded scale: rounded to
  // bf16, 706 of its 3072 values differ (a value of order 1 moves by 0.13%, under half a bf16 ulp often).
  const std::vector<float> fp32 = golden["embed.out_fp32"].floats();
  size_t differ = 0;
  for (size_t i = 0; i < expected.size(); i++) differ += bf16_to_float(float_to_bf16(fp32[i])) != expected[i];
  CHECK(differ > expected.size() / 10);
}

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
      CAPTURE(disable_direct);
      CAPTURE(name);
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

TEST_CASE("gemma golden: greedy generation of 20 tokens with the KV cache matches transformers") {
  for (std::string kind : {"gemma3", "gemma2"}) {
    CAPTURE(kind);
    const std::filesystem::path data = test::source_dir() / "tests/data";
    test::GoldenFile golden(data / "golden" / ("hf_" + kind + ".golden.bin"));
    model::GeneratorOptions options;
    options.model = data / "hf" / kind;
    options.adapter = data / "hf" / (kind + "_adapter");
    options.max_tokens = 64;
    options.prefill_rows = 3;  // the 4-token prompt runs as a 3-token and a 1-token block
    model::Generator generator(context(), options);
    std::vector<uint32_t> prompt, expected;
    for (int64_t id : golden["greedy_prompt"].ints()) prompt.push_back(static_cast<uint32_t>(id));
    for (int64_t id : golden["greedy_tokens"].ints()) expected.push_back(static_cast<uint32_t>(id));
    model::SamplingOptions sampling;
    sampling.max_new_tokens = 20;
    CHECK(generator.generate(prompt, sampling) == expected);
  }
}

}  // TEST_SUITE

TEST_SUITE("model_io") {

TEST_CASE("gemma config: Gemma 2 and 3 fields are read; unsupported or invalid ones are a UserError naming the field") {
  const std::filesystem::path file = test::source_dir() / "tests/data/hf/gemma3/config.json";
  model::ModelConfig config = model::load_model_config(file);
  CHECK(config.architecture == model::Architecture::gemma3);
  CHECK(config.gemma);
  CHECK(config.query_pre_attn_scalar == 24);
  CHECK(config.rope_theta == 1000000.0);
  CHECK(config.rope_local_theta == 10000.0);
  REQUIRE(config.sliding_window.has_value());
  CHECK(*config.sliding_window == 5);
  CHECK(config.sliding_window_layers == std::vector<bool>{true, false});
  nlohmann::json document = config.original;
  auto error_of = [&](const char* key, nlohmann::json value) {
    nlohmann::json changed = document;
    changed[key] = value;
    try {
      model::parse_model_config(changed, "config.json");
    } catch (const UserError& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  CHECK(error_of("final_logit_softcapping", -1.0).find("final_logit_softcapping") != std::string::npos);
  CHECK(error_of("attn_logit_softcapping", -1.0).find("attn_logit_softcapping") != std::string::npos);
  CHECK(error_of("hidden_activation", "gelu").find("hidden_activation") != std::string::npos);
  CHECK(error_of("use_bidirectional_attention", true).find("use_bidirectional_attention") != std::string::npos);
  CHECK(error_of("sliding_window", nullptr).find("sliding_window") != std::string::npos);
  model::ModelConfig gemma2 = model::load_model_config(test::source_dir() / "tests/data/hf/gemma2/config.json");
  CHECK(gemma2.architecture == model::Architecture::gemma2);
  CHECK_FALSE(gemma2.qk_norm);
  CHECK(gemma2.attn_logit_softcapping == 50.0);
  CHECK(gemma2.final_logit_softcapping == 30.0);
  CHECK(gemma2.sliding_window_layers == std::vector<bool>{true, false});
}

}  // TEST_SUITE
