// Golden parity with PyTorch (tests/reference/make_golden.py, data in tests/data/golden/): tiny
// Llama (MHA, untied, llama3 RoPE) and Qwen2 (q/k/v bias, GQA, tied) models with LoRA on all seven
// linears, forward and backward on a prompt/completion batch with per-token loss weights.
// Bounds (the issue's): logits max-abs <= 1e-4, loss relative <= 1e-5, every LoRA gradient
// relative error (||g - g_ref|| / ||g_ref||) <= 1e-3, in fp32; the same for an NF4 + double-quant
// base. The fp16 base stores weights as fp16 exactly as the reference rounded them and computes in
// fp32, so the same bounds hold; we state them looser (1e-3 / 1e-2) to leave room for devices that
// contract fp16 loads differently.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/kernels/optimizer.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/generate.hpp"
#include "engine/base/half.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"
#include "engine/quant/quantize.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/golden_file.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

fs::path golden_dir() { return test::source_dir() / "tests/data/golden"; }

double relative_error(const std::vector<float>& actual, const std::vector<float>& expected) {
  double error = 0, reference = 0;
  for (size_t i = 0; i < expected.size(); i++) {
    double d = double(actual[i]) - expected[i];
    error += d * d;
    reference += double(expected[i]) * expected[i];
  }
  return std::sqrt(error / std::max(reference, 1e-30));
}

struct GoldenBatch {
  uint32_t batch = 0, seq = 0;
  std::vector<uint32_t> ids, targets, positions, segments;
  std::vector<float> weights;
  std::vector<int64_t> lengths;
  double weight_sum = 0;
};

// The golden batch in our input layout: row t predicts ids[t+1] with weight w[t+1].
GoldenBatch golden_batch(const test::GoldenFile& golden) {
  GoldenBatch b;
  const auto& ids = golden["batch.ids"];
  b.batch = static_cast<uint32_t>(ids.shape[0]);
  b.seq = static_cast<uint32_t>(ids.shape[1]);
  auto id_values = ids.ints();
  auto weight_values = golden["batch.weights"].floats();
  auto position_values = golden["batch.positions"].ints();
  b.lengths = golden["batch.lengths"].ints();
  size_t n = size_t(b.batch) * b.seq;
  b.ids.resize(n);
  b.targets.assign(n, 0);
  b.weights.assign(n, 0.0f);
  b.positions.resize(n);
  b.segments.assign(n, 0);  // one sequence per row; right padding is causal-invisible
  for (size_t i = 0; i < n; i++) {
    b.ids[i] = static_cast<uint32_t>(id_values[i]);
    b.positions[i] = static_cast<uint32_t>(position_values[i]);
    if ((i + 1) % b.seq != 0) {
      b.targets[i] = static_cast<uint32_t>(id_values[i + 1]);
      b.weights[i] = weight_values[i + 1];
      b.weight_sum += weight_values[i + 1];
    }
  }
  return b;
}

struct GoldenRun {
  std::vector<float> logits;  // (rows, vocab)
  double loss = 0;
  std::vector<float> dembed;  // (rows, hidden)
  std::map<std::string, std::vector<float>> gradients;  // by golden name suffix
};

void upload_batch(vk::Context& ctx, model::BufferSet& buffers, const GoldenBatch& b) {
  ctx.upload(buffers.buffer("input.ids"), b.ids.data(), 0, b.ids.size() * 4);
  ctx.upload(buffers.buffer("input.targets"), b.targets.data(), 0, b.targets.size() * 4);
  ctx.upload(buffers.buffer("input.weights"), b.weights.data(), 0, b.weights.size() * 4);
  ctx.upload(buffers.buffer("input.positions"), b.positions.data(), 0, b.positions.size() * 4);
  ctx.upload(buffers.buffer("input.segments"), b.segments.data(), 0, b.segments.size() * 4);
}

// Opens `folder` with `settings` (+ the adapter of `adapter_dir` unless full finetuning), runs the
// golden batch forward for logits, then forward + backward for loss and gradients.
GoldenRun run_golden(const test::GoldenFile& golden, const fs::path& folder, const fs::path& adapter_dir,
                     spec::RunSettings settings) {
  auto& ctx = test::context();
  GoldenBatch batch = golden_batch(golden);
  settings.batch = batch.batch;
  settings.seq_len = batch.seq;
  settings.training = true;
  model::LoraSettings lora;
  const bool full = settings.method == spec::Method::full;
  if (!full) lora = model::load_adapter_config(adapter_dir).settings;
  auto session = model::open_model(ctx, folder, settings, full ? nullptr : &lora);
  auto& buffers = *session->buffers;
  if (!full) model::load_adapter_weights(ctx, buffers, session->plan.shape, lora, adapter_dir);
  upload_batch(ctx, buffers, batch);
  kernels::StepState state;
  state.spare[0] = static_cast<float>(1.0 / batch.weight_sum);
  kernels::write_step_state(ctx, buffers.buffer("step_state"), state);

  const uint32_t rows = batch.batch * batch.seq;
  const uint32_t vocab = static_cast<uint32_t>(session->config.vocab_size);
  GoldenRun run;
  vk::Buffer logits = ctx.allocate(uint64_t(rows) * vocab * 4, vk::Category::workspace, "golden.logits");
  ctx.run([&](vk::Recorder& r) { session->transformer->record_logits(r, logits.range()); });
  run.logits = test::download(logits);

  auto& transformer = *session->transformer;
  transformer.set_compute_input_gradient(true);
  ctx.run([&](vk::Recorder& r) {
    for (const auto& spec : session->plan.buffers)
      if (spec.category == vk::Category::gradients || spec.name == "loss.step") r.fill(buffers.range(spec.name));
  });
  ctx.run([&](vk::Recorder& r) {
    transformer.record_forward(r, true, true);
    transformer.record_backward(r);
  });
  float loss_sum = 0;
  ctx.download(buffers.buffer("loss.step"), &loss_sum, 0, 4);
  run.loss = loss_sum / batch.weight_sum;
  run.dembed = test::download(buffers.buffer("grad_act.residual"));
  for (const auto& spec : session->plan.buffers) {
    if (spec.category != vk::Category::gradients) continue;
    std::string name = spec.name.substr(5);  // after "grad."
    std::string golden_name = name;
    if (!full) {  // model.layers.0.self_attn.q_proj.lora_A -> PEFT name
      golden_name = "base_model.model." + name + ".weight";
    }
    run.gradients[golden_name] = test::download(buffers.buffer(spec.name));
  }
  return run;
}

// Compares the real (non-padding) rows of (batch, seq, width) tensors.
void check_rows(const std::vector<float>& actual, const std::vector<float>& expected, const GoldenBatch& b,
                uint32_t width, double max_abs, const std::string& what) {
  double worst = 0;
  for (uint32_t row = 0; row < b.batch; row++)
    for (int64_t t = 0; t < b.lengths[row]; t++)
      for (uint32_t j = 0; j < width; j++) {
        size_t i = (size_t(row) * b.seq + size_t(t)) * width + j;
        worst = std::max(worst, std::fabs(double(actual[i]) - expected[i]));
      }
  INFO(what << ": max-abs error " << worst << " (bound " << max_abs << ")");
  CHECK(worst <= max_abs);
}

struct Bounds {
  double logits = 1e-4, loss = 1e-5, gradient = 1e-3, dembed = 1e-3;
};

void check_variant(const std::string& model, const std::string& variant, const fs::path& folder,
                   const spec::RunSettings& settings, Bounds bounds) {
  test::GoldenFile golden(golden_dir() / (model + ".golden.bin"));
  GoldenBatch batch = golden_batch(golden);
  GoldenRun run = run_golden(golden, folder, golden_dir() / model / "adapter", settings);
  const uint32_t vocab = static_cast<uint32_t>(golden[variant + ".logits"].shape[2]);
  check_rows(run.logits, golden[variant + ".logits"].floats(), batch, vocab, bounds.logits, model + " " + variant + " logits");
  double expected_loss = golden[variant + ".loss"].scalar();
  INFO(model << " " << variant << " loss " << run.loss << " vs " << expected_loss);
  CHECK(std::fabs(run.loss - expected_loss) / expected_loss <= bounds.loss);
  double dembed_error = relative_error(run.dembed, golden[variant + ".dembed"].floats());
  INFO("dembed relative error " << dembed_error);
  CHECK(dembed_error <= bounds.dembed);
  size_t compared = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, gradient] : run.gradients) {
    std::string key = variant + ".grad." + name;
    REQUIRE_MESSAGE(golden.has(key), "golden has no " << key);
    double error = relative_error(gradient, golden[key].floats());
    if (error > worst) { worst = error; worst_name = name; }
    compared++;
  }
  INFO(model << " " << variant << ": " << compared << " gradients, worst relative error " << worst << " (" << worst_name
             << ")");
  CHECK(compared > 0);
  CHECK(worst <= bounds.gradient);
}

spec::RunSettings lora_settings(kernels::WeightFormat format) {
  spec::RunSettings settings;
  settings.method = spec::Method::lora;
  settings.base_format = format;
  return settings;
}

}  // namespace

TEST_SUITE("model_golden") {

TEST_CASE("golden: llama fp32 LoRA forward and backward match PyTorch") {
  check_variant("llama", "fp32", golden_dir() / "llama", lora_settings(kernels::WeightFormat::f32), Bounds{});
}

TEST_CASE("golden: qwen2 fp32 LoRA (bias, GQA, tied) forward and backward match PyTorch") {
  check_variant("qwen2", "fp32", golden_dir() / "qwen2", lora_settings(kernels::WeightFormat::f32), Bounds{});
}

TEST_CASE("golden: NF4 + double quant quantized by vktune matches the bitsandbytes-dequantized reference") {
  spec::RunSettings settings = lora_settings(kernels::WeightFormat::nf4);
  settings.double_quant = true;
  check_variant("llama", "nf4", golden_dir() / "llama", settings, Bounds{});
  check_variant("qwen2", "nf4", golden_dir() / "qwen2", settings, Bounds{});
}

TEST_CASE("golden: a bitsandbytes 4-bit checkpoint loads without requantizing and matches") {
  spec::RunSettings settings = lora_settings(kernels::WeightFormat::nf4);
  settings.double_quant = true;
  check_variant("llama", "nf4", golden_dir() / "llama-nf4", settings, Bounds{});
  check_variant("qwen2", "nf4", golden_dir() / "qwen2-nf4", settings, Bounds{});
}

TEST_CASE("golden: qwen2 fp16 base") {
  spec::RunSettings settings = lora_settings(kernels::WeightFormat::f16);
  settings.dtype = kernels::DType::f16;
  Bounds loose;
  loose.logits = 1e-3;
  loose.loss = 1e-4;
  loose.gradient = 1e-2;
  loose.dembed = 1e-2;
  check_variant("qwen2", "fp16", golden_dir() / "qwen2-f16", settings, loose);
}

TEST_CASE("golden: qwen2 full finetuning gradients of every weight") {
  spec::RunSettings settings;
  settings.method = spec::Method::full;
  check_variant("qwen2", "full", golden_dir() / "qwen2", settings, Bounds{});
}

TEST_CASE("golden: gradient checkpointing (per-layer recompute) gives the same gradients") {
  spec::RunSettings settings = lora_settings(kernels::WeightFormat::f32);
  settings.gradient_checkpointing = true;
  check_variant("llama", "fp32", golden_dir() / "llama", settings, Bounds{});
  check_variant("qwen2", "fp32", golden_dir() / "qwen2", settings, Bounds{});
  spec::RunSettings full;
  full.method = spec::Method::full;
  full.gradient_checkpointing = true;
  check_variant("qwen2", "full", golden_dir() / "qwen2", full, Bounds{});
}

// A copy of the golden llama whose linear weights are replaced by `transform(weight)` (stored
// as F32): loading it in fp32 computes exactly what loading the original in a compressed format
// computes, if the compressed path is right.
fs::path transformed_llama(const std::string& name,
                           const std::function<std::vector<float>(const std::vector<float>&, uint32_t, uint32_t)>& transform) {
  fs::path source = golden_dir() / "llama", target = test::temp_dir("golden-" + name);
  model::SafetensorsFile file(source / "model.safetensors");
  std::vector<model::TensorToWrite> tensors;
  for (const auto& tensor : file.tensors()) {
    auto values = std::make_shared<std::vector<float>>(model::to_fp32(tensor));
    bool linear = tensor.name.find("_proj.weight") != std::string::npos;
    if (linear) *values = transform(*values, static_cast<uint32_t>(tensor.shape[0]), static_cast<uint32_t>(tensor.shape[1]));
    if (tensor.name == "model.embed_tokens.weight" || tensor.name == "lm_head.weight")
      *values = transform(*values, 0, 0);  // rows = 0: dense tensors (only dtype rounding applies)
    tensors.push_back({tensor.name, model::FileDtype::F32, tensor.shape,
                       [values](model::TensorSink& sink) { sink.write(values->data(), values->size() * 4); }});
  }
  model::write_safetensors(target / "model.safetensors", std::move(tensors));
  fs::copy_file(source / "config.json", target / "config.json");
  return target;
}

std::vector<float> logits_of(const fs::path& folder, spec::RunSettings settings) {
  test::GoldenFile golden(golden_dir() / "llama.golden.bin");
  return run_golden(golden, folder, golden_dir() / "llama" / "adapter", settings).logits;
}

TEST_CASE("model: bf16, INT8, INT4 and INT4-asym bases compute what fp32 computes on their dequantized weights") {
  struct Case { const char* name; kernels::WeightFormat format; };
  for (Case c : {Case{"int8", kernels::WeightFormat::int8}, Case{"int4", kernels::WeightFormat::int4},
                 Case{"int4_asym", kernels::WeightFormat::int4_asym}}) {
    fs::path reference = transformed_llama(c.name, [&](const std::vector<float>& w, uint32_t rows, uint32_t cols) {
      if (rows == 0) return w;
      return quant::dequantize(quant::quantize(w.data(), rows, cols, c.format));
    });
    auto expected = logits_of(reference, lora_settings(kernels::WeightFormat::f32));
    auto actual = logits_of(golden_dir() / "llama", lora_settings(c.format));
    // Same weights, same math: only the summation order inside the matmul differs.
    test::check_close(actual, expected, 1e-10, 2e-5, std::string(c.name) + " logits");
  }
  fs::path rounded = transformed_llama("bf16", [](const std::vector<float>& w, uint32_t, uint32_t) {
    std::vector<float> out(w.size());
    for (size_t i = 0; i < w.size(); i++) out[i] = bf16_to_float(float_to_bf16(w[i]));
    return out;
  });
  spec::RunSettings bf16 = lora_settings(kernels::WeightFormat::bf16);
  bf16.dtype = kernels::DType::bf16;
  test::check_close(logits_of(golden_dir() / "llama", bf16), logits_of(rounded, lora_settings(kernels::WeightFormat::f32)),
                    1e-10, 2e-5, "bf16 logits");
}

TEST_CASE("golden: greedy generation of 20 tokens with the KV cache matches PyTorch") {
  for (const char* name : {"llama", "qwen2"}) {
    test::GoldenFile golden(golden_dir() / (std::string(name) + ".golden.bin"));
    model::GeneratorOptions options;
    options.model = golden_dir() / name;
    options.adapter = golden_dir() / name / "adapter";
    options.max_tokens = 64;
    options.prefill_rows = 3;  // the 5-token prompt runs as a 3-token and a 2-token block
    model::Generator generator(test::context(), options);
    std::vector<uint32_t> prompt;
    for (int64_t id : golden["gen.prompt"].ints()) prompt.push_back(static_cast<uint32_t>(id));
    model::SamplingOptions sampling;
    sampling.max_new_tokens = 20;
    std::vector<uint32_t> ids = generator.generate(prompt, sampling);
    std::vector<uint32_t> expected;
    for (int64_t id : golden["gen.ids"].ints()) expected.push_back(static_cast<uint32_t>(id));
    INFO(name);
    CHECK(ids == expected);
  }
}

}  // TEST_SUITE
