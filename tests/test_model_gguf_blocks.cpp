// A GGUF base kept in its own types on the device (--quant gguf, the default for a .gguf model):
// the matmul dequantizes the raw blocks in its load stage (shaders/ggml_blocks.glsl), so logits, loss
// and the input gradient (through every matmul_nn) must equal the dequantize-on-load path
// (VKT_DISABLE_GGUF_BLOCKS=1) up to fp32 summation order; the plan sizes each weight by its own type.
// Files: tests/data/gguf/mixed_blocks.gguf (tests/reference/gguf_mixed_model.py: Q4_K, Q5_K, Q6_K,
// Q5_0, Q4_0, Q5_1, Q4_1 in one layer) and llama3.q8_0.gguf (llama.cpp's converter, Q8_0).
#include <doctest/doctest.h>

#include "engine/merge/quantize_model.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_weights.hpp"
#include "engine/model/session.hpp"
#include "engine/plan/plan.hpp"
#include "engine/quant/ggml_device.hpp"
#include "tests/golden_run.hpp"
#include "tests/kernel_harness.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;
using kernels::WeightFormat;

namespace {

fs::path gguf_dir() { return test::source_dir() / "tests/data/gguf"; }
fs::path llama3_golden() { return test::source_dir() / "tests/data/hf/llama3.golden.bin"; }

// The llama3 golden batch (ids < 128) through `file`, blocks on the device vs dequantized on load.
void check_same_as_dequantized_on_load(const fs::path& file) {
  test::GoldenFile golden(llama3_golden());
  test::GoldenBatch batch = test::golden_batch(golden);
  const spec::RunSettings settings = test::lora_run_settings(WeightFormat::f32);
  test::GoldenRun kept = test::run_golden(golden, file, {}, settings);
  test::GoldenRun loaded;
  {
    test::ScopedEnv off("VKT_DISABLE_GGUF_BLOCKS", "1");
    loaded = test::run_golden(golden, file, {}, settings);
  }
  struct {
    double logits = 0, loss = 0, dembed = 0;
  } c;
  const auto width = static_cast<uint32_t>(kept.logits.size() / (batch.batch * batch.seq_len));
  c.logits = test::worst_real_row_error(kept.logits, loaded.logits, batch, width);
  c.loss = std::abs(kept.loss - loaded.loss) / std::abs(loaded.loss);
  c.dembed = test::relative_error(kept.dembed, loaded.dembed);
  // Two different paths (else this test compares nothing): the switch leaves the base dense.
  spec::RunSettings switched = settings;
  {
    test::ScopedEnv off("VKT_DISABLE_GGUF_BLOCKS", "1");
    model::resolve_gguf_formats(file, model::load_model_config(file), switched);
  }
  CHECK(switched.base_format == WeightFormat::f32);
  spec::RunSettings resolved = settings;
  model::resolve_gguf_formats(file, model::load_model_config(file), resolved);
  CHECK(resolved.base_format == WeightFormat::gguf);
  // Tolerances: the two paths multiply the same fp32 weights (the decoding is bit-exact,
  // kernels_quant) and could differ only in summation order (fp32 error, ~1e-6 on these logits);
  // bounds 5e-5 max-abs. Measured on lavapipe: 0 everywhere (same tiles, same order).
  MESSAGE(file.filename().string() << ": logits max-abs " << c.logits << ", loss relative " << c.loss
                                   << ", d embedding relative " << c.dembed);
  CHECK(c.logits <= 5e-5);
  CHECK(c.loss <= 1e-6);
  CHECK(c.dembed <= 1e-5);
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("gguf blocks: Q4_K/Q5_K/Q6_K/Q5_0/Q4_0/Q5_1/Q4_1 kept on the device give the dequantize-on-load results") {
  check_same_as_dequantized_on_load(gguf_dir() / "mixed_blocks.gguf");
}

TEST_CASE("gguf blocks: a Q8_0 file (llama's Q/K rows un-permuted as raw rows) gives the dequantize-on-load results") {
  check_same_as_dequantized_on_load(gguf_dir() / "llama3.q8_0.gguf");
}

TEST_CASE("gguf blocks: the plan takes each weight's stored type and its bytes (Q4_K 144 per 256, ...)") {
  const fs::path file = gguf_dir() / "mixed_blocks.gguf";
  model::ModelConfig config = model::load_model_config(file);
  spec::RunSettings settings = test::lora_run_settings(WeightFormat::f32);
  model::resolve_gguf_formats(file, config, settings);
  REQUIRE(settings.base_format == WeightFormat::gguf);
  const std::vector<WeightFormat> expected = {WeightFormat::ggml_q4_k, WeightFormat::ggml_q5_k, WeightFormat::ggml_q6_k,
                                              WeightFormat::ggml_q5_0, WeightFormat::ggml_q4_0, WeightFormat::ggml_q5_1,
                                              WeightFormat::ggml_q4_1};
  CHECK(settings.gguf_formats == expected);
  plan::MemoryPlan plan = plan::make_plan(model::model_shape(config), settings);
  model::GgufTensorSource source(file, config);
  uint64_t stored = 0;
  for (const auto& tensor : source.file().tensors())
    if (tensor.name.find("attn_norm") == std::string::npos && tensor.name.find("ffn_norm") == std::string::npos &&
        tensor.name.rfind("blk.", 0) == 0)
      stored += tensor.bytes.size() + kernels::ggml_tail_bytes;
  CHECK(plan.bytes(vk::Category::quantized_weights) == stored);
  // Q4_K: 144 bytes per 256 weights; attn_q is 256 x 256.
  CHECK(plan.find("model.layers.0.self_attn.q_proj.weight").bytes == 256 * 256 / 256 * 144 + 4);
  CHECK(plan::weight_bytes(32 * 100, WeightFormat::ggml_q8_0, 0, false) == 100 * 34 + 4);
  CHECK(plan::weight_bytes(256 * 3, WeightFormat::ggml_q6_k, 0, false) == 3 * 210 + 4);

  // Another --quant requantizes on load; full finetuning dequantizes; both leave the settings alone.
  spec::RunSettings nf4 = test::lora_run_settings(WeightFormat::nf4);
  model::resolve_gguf_formats(file, config, nf4);
  CHECK(nf4.base_format == WeightFormat::nf4);
  CHECK(nf4.gguf_formats.empty());
}

TEST_CASE("gguf blocks: --quant gguf on a non-GGUF model or with full finetuning is a user error") {
  vk::Context& ctx = test::context();
  spec::RunSettings settings = test::lora_run_settings(WeightFormat::gguf);
  const fs::path folder = test::source_dir() / "tests/data/hf/llama3";
  std::string error = test::user_error_of([&] { model::open_model(ctx, folder, settings, nullptr); });
  CHECK(error.find(folder.string()) != std::string::npos);
  CHECK(error.find("not a GGUF file") != std::string::npos);
  const fs::path file = gguf_dir() / "llama3.q8_0.gguf";
  settings.method = spec::Method::full;
  error = test::user_error_of([&] { model::resolve_gguf_formats(file, model::load_model_config(file), settings); });
  CHECK(error.find("--method full") != std::string::npos);
  // `vktune quantize --format gguf` is no format it writes.
  error = test::user_error_of([&] { merge::parse_quantize_format("gguf"); });
  CHECK(error.find("'gguf' is not supported") != std::string::npos);
}

}  // TEST_SUITE
