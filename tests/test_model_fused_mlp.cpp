// The SwiGLU fused into the up product's epilogue (engine/model/fused_mlp.hpp) against the separate
// swiglu kernel (VKT_DISABLE_FUSED_SWIGLU=1) on the llama3 golden model with its PEFT adapter: logits,
// loss, d loss/d embedding and every LoRA gradient bit for bit (the same products and the same h
// expression on the same stored up values), fp32 under gradient checkpointing (the recomputed
// forward fuses too). That both match transformers + PEFT is the
// model_hf suite's golden test, which runs the fused path by default. Suite model_hf.
#include <doctest/doctest.h>

#include <string>

#include "tests/golden_file.hpp"
#include "tests/golden_run.hpp"
#include "tests/ops_test_util.hpp"
#include "tests/support.hpp"

using namespace vkt;

namespace {

std::filesystem::path llama3_dir() { return test::source_dir() / "tests/data/hf/llama3"; }

void check_fused_equals_separate(const spec::RunSettings& settings, const std::string& what) {
  INFO(what);
  test::GoldenFile golden(test::source_dir() / "tests/data/hf/llama3.golden.bin");
  test::GoldenRun fused = test::run_golden(golden, llama3_dir(), llama3_dir() / "adapter", settings);
  test::GoldenRun separate;
  {
    test::ScopedEnv off("VKT_DISABLE_FUSED_SWIGLU", "1");
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
  check_fused_equals_separate(settings, "fp32, gradient checkpointing");
}

}  // TEST_SUITE
