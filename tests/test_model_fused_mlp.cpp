// Fusions against their kill switches on the llama3 golden model with its PEFT adapter: logits, loss,
// d loss/d embedding and every LoRA gradient bit for bit.
// - The SwiGLU fused into the up product's epilogue (engine/model/fused_mlp.hpp) against the separate
//   swiglu kernel (VKT_DISABLE_FUSED_SWIGLU=1): the same products and the same h expression on the same
//   stored up values; fp32 under gradient checkpointing (the recomputed forward fuses too).
// - LoRA's t = x·Aᵀ in the base product's dispatch (kernels/matmul_lora_a.hpp, every LoRA layer without
//   dropout) against its own dispatch (VKT_DISABLE_FUSED_LORA_A=1): fp32 and NF4 with double quantization.
// That the fused paths match transformers + PEFT is the model_hf suite's golden test, which runs them
// by default. Suite model_hf.
#include <doctest/doctest.h>

#include <string>

#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/ops_test_util.hpp"
#include "tests/support.hpp"

using namespace vkt;

namespace {

std::filesystem::path llama3_dir() { return test::source_dir() / "tests/data/hf/llama3"; }

void check_fused_equals_separate(const spec::RunSettings& settings, const char* kill_switch, const std::string& what) {
  INFO(what);
  test::GoldenFile golden(test::source_dir() / "tests/data/hf/llama3.golden.bin");
  test::GoldenRun fused = test::run_golden(golden, llama3_dir(), llama3_dir() / "adapter", settings);
  test::GoldenRun separate;
  {
    test::ScopedEnv off(kill_switch, "1");
    separate = test::run_golden(golden, llama3_dir(), llama3_dir() / "adapter", settings);
  }
  CHECK(test::same_bits(fused.logits, separate.logits));
  CHECK(fused.loss == separate.loss);
  CHECK(test::same_bits(fused.dembed, separate.dembed));
  REQUIRE(!fused.gradients.empty());
  for (const auto& entry : separate.gradients) {
    const std::string& name = entry.first;
    INFO(name);
    REQUIRE(fused.gradients.count(name) == 1);
    CHECK(test::same_bits(fused.gradients[name], entry.second));
  }
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("fused swiglu: the up product's epilogue gives the separate kernel's logits, loss and gradients") {
  // Under gradient checkpointing: the forward and its recomputation in the backward both fuse.
  spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  settings.gradient_checkpointing = true;
  check_fused_equals_separate(settings, "VKT_DISABLE_FUSED_SWIGLU", "fp32, gradient checkpointing");
}

TEST_CASE("fused LoRA A: t = x·Aᵀ in the base product's dispatch gives the separate products' logits, loss and gradients") {
  check_fused_equals_separate(test::lora_run_settings(kernels::WeightFormat::f32), "VKT_DISABLE_FUSED_LORA_A", "fp32");
  spec::RunSettings nf4 = test::lora_run_settings(kernels::WeightFormat::nf4);
  nf4.double_quant = true;
  check_fused_equals_separate(nf4, "VKT_DISABLE_FUSED_LORA_A", "nf4, double quantization");
}

}  // TEST_SUITE
