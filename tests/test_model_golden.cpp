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

#include "engine/base/half.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"
#include "engine/quant/quantize.hpp"
#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

fs::path golden_dir() { return test::source_dir() / "tests/data/golden"; }

using Bounds = test::GoldenBounds;
using test::run_golden;

void check_variant(const std::string& model, const std::string& variant, const fs::path& folder,
                   const spec::RunSettings& settings, Bounds bounds) {
  test::check_golden_variant(golden_dir() / (model + ".golden.bin"), variant, folder, golden_dir() / model / "adapter",
                             settings, bounds);
}

spec::RunSettings lora_settings(kernels::WeightFormat format) { return test::lora_run_settings(format); }

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
fs::path transformed_llama(
    const std::string& name,
    const std::function<std::vector<float>(const std::vector<float>&, uint32_t, uint32_t)>& transform) {
  fs::path source = golden_dir() / "llama", target = test::temp_dir("golden-" + name);
  model::SafetensorsFile file(source / "model.safetensors");
  std::vector<model::TensorToWrite> tensors;
  for (const auto& tensor : file.tensors()) {
    auto values = std::make_shared<std::vector<float>>(model::to_fp32(tensor));
    bool linear = tensor.name.find("_proj.weight") != std::string::npos;
    if (linear)
      *values = transform(*values, static_cast<uint32_t>(tensor.shape[0]), static_cast<uint32_t>(tensor.shape[1]));
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
  struct Case {
    const char* name;
    kernels::WeightFormat format;
  };
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
  test::check_close(logits_of(golden_dir() / "llama", bf16),
                    logits_of(rounded, lora_settings(kernels::WeightFormat::f32)), 1e-10, 2e-5, "bf16 logits");
}

TEST_CASE("golden: greedy generation of 20 tokens with the KV cache matches PyTorch") {
  for (const char* name : {"llama", "qwen2"})
    test::check_golden_generation(golden_dir() / (std::string(name) + ".golden.bin"), golden_dir() / name,
                                  golden_dir() / name / "adapter");
}

}  // TEST_SUITE
