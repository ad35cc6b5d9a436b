// What llama.cpp assumes for gemma2/gemma3/phi3 GGUF files when the converter leaves a key out
// (engine/model/gguf_families.hpp), on hand-built metadata: the converter's own files
// (tests/test_model_gguf_golden.cpp) cover only the keys it writes for two-layer models.
#include <doctest/doctest.h>

#include <functional>

#include "engine/model/gguf_model.hpp"
#include "tests/gguf_builder.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::test;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kHidden = 64, kHeads = 4, kHeadDim = 32, kVocab = 4;

// A gemma2/gemma3/phi3 file of `layers` layers: the keys every converter writes, then `extra`'s
// (counted in `extra_keys`), and the two tensors the config reads (token_embd, blk.0.attn_q or
// attn_qkv) plus `factor_tensors` (Phi-3's rope_factors_long/short, kHeadDim / 2 values each).
fs::path metadata_file(const std::string& arch, uint32_t layers, uint64_t extra_keys,
                       const std::function<void(GgufBuilder&)>& extra, std::vector<std::string> factor_tensors = {}) {
  GgufBuilder b;
  const std::string query = arch == "phi3" ? "blk.0.attn_qkv.weight" : "blk.0.attn_q.weight";
  b.header(3, 2 + factor_tensors.size(), 8 + extra_keys);
  b.key_string("general.architecture", arch);
  b.key_u32(arch + ".embedding_length", kHidden);
  b.key_u32(arch + ".feed_forward_length", 2 * kHidden);
  b.key_u32(arch + ".block_count", layers);
  b.key_u32(arch + ".attention.head_count", kHeads);
  b.key_u32(arch + ".attention.key_length", kHeadDim);
  b.key_u32(arch + ".context_length", 8192);
  b.key_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  extra(b);
  const uint64_t embedding_bytes = uint64_t{kHidden} * kVocab * 4, query_bytes = uint64_t{kHidden} * 32 * 4;
  b.tensor_info("token_embd.weight", {kHidden, kVocab}, 0, 0);
  b.tensor_info(query, {kHidden, 32}, 0, embedding_bytes);
  uint64_t offset = embedding_bytes + query_bytes;
  for (const std::string& name : factor_tensors) {
    b.tensor_info(name, {kHeadDim / 2}, 0, offset);
    offset += 64;  // kHeadDim / 2 floats, padded to the alignment
  }
  b.pad_to(32);
  for (uint64_t i = 0; i < embedding_bytes + query_bytes; i += 4) b.put<float>(0.0f);
  for (size_t t = 0; t < factor_tensors.size(); t++)
    for (uint32_t i = 0; i < kHeadDim / 2; i++) b.put<float>(1.0f + static_cast<float>(i));
  const fs::path path = temp_dir("gguf_families") / (arch + "_" + std::to_string(layers) + ".gguf");
  write_bytes(path, b.bytes);
  return path;
}

model::ModelConfig config_of(const fs::path& path) { return model::load_model_config(path); }

std::vector<bool> every_nth_global(uint32_t layers, uint32_t period) {
  std::vector<bool> sliding(layers);
  for (uint32_t layer = 0; layer < layers; layer++) sliding[layer] = layer % period < period - 1;
  return sliding;
}

}  // namespace

TEST_SUITE("model_io") {

TEST_CASE("gguf gemma3: llama.cpp's defaults -- pattern 6, local base 10000, 1/sqrt(head_dim), no soft caps") {
  model::ModelConfig config = config_of(metadata_file("gemma3", 12, 2, [](GgufBuilder& b) {
    b.key_u32("gemma3.attention.sliding_window", 512);
    b.key_f32("gemma3.rope.freq_base", 1e6f);
  }));
  CHECK(config.architecture == model::Architecture::gemma3);
  CHECK(config.sliding_window == 512);
  CHECK(config.sliding_window_layers == every_nth_global(12, 6));
  CHECK(!config.sliding_window_layers[5]);
  CHECK(config.rope_theta == 1e6);
  CHECK(config.rope_local_theta == 10000.0);
  CHECK(config.query_pre_attn_scalar == kHeadDim);
  CHECK(config.attn_logit_softcapping == 0);
  CHECK(config.final_logit_softcapping == 0);
  CHECK(config.qk_norm);
  CHECK(config.tie_word_embeddings);
}

TEST_CASE("gguf gemma3: the 27B's query scale, a period, a per-layer pattern, no window, linear scaling") {
  // 62 layers (Gemma 3 27B): llama.cpp scales queries by 1/sqrt(hidden / heads), not 1/sqrt(head_dim).
  CHECK(config_of(metadata_file("gemma3", 62, 0, [](GgufBuilder&) {})).query_pre_attn_scalar == kHidden / kHeads);
  model::ModelConfig period = config_of(metadata_file("gemma3", 7, 2, [](GgufBuilder& b) {
    b.key_u32("gemma3.attention.sliding_window", 64);
    b.key_u32("gemma3.attention.sliding_window_pattern", 3);
  }));
  CHECK(period.sliding_window_layers == every_nth_global(7, 3));
  const std::vector<bool> pattern = {true, false, false, true, true};
  CHECK(config_of(metadata_file("gemma3", 5, 2, [&](GgufBuilder& b) {
          b.key_u32("gemma3.attention.sliding_window", 64);
          b.key_bool_array("gemma3.attention.sliding_window_pattern", pattern);
        })).sliding_window_layers == pattern);
  // No window: every layer is global (llama.cpp's LLAMA_SWA_TYPE_NONE).
  model::ModelConfig global = config_of(metadata_file("gemma3", 6, 0, [](GgufBuilder&) {}));
  CHECK(!global.sliding_window);
  CHECK(global.sliding_window_layers == std::vector<bool>(6, false));
  // Linear scaling applies to the global layers' base only (as HF's rope_parameters.full_attention).
  model::ModelConfig scaled = config_of(metadata_file("gemma3", 6, 5, [](GgufBuilder& b) {
    b.key_u32("gemma3.attention.sliding_window", 64);
    b.key_f32("gemma3.rope.freq_base", 1e6f);
    b.key_f32("gemma3.rope.freq_base_swa", 20000.0f);
    b.key_string("gemma3.rope.scaling.type", "linear");
    b.key_f32("gemma3.rope.scaling.factor", 8.0f);
  }));
  CHECK(scaled.rope_scaling.type == "linear");
  CHECK(scaled.rope_scaling.factor == 8.0);
  CHECK(scaled.rope_local_theta == 20000.0);
}

TEST_CASE("gguf gemma2: soft caps 50/30, window 4096 and every second layer global when the keys are absent") {
  model::ModelConfig config = config_of(metadata_file("gemma2", 4, 0, [](GgufBuilder&) {}));
  CHECK(config.architecture == model::Architecture::gemma2);
  CHECK(config.attn_logit_softcapping == 50.0);
  CHECK(config.final_logit_softcapping == 30.0);
  CHECK(config.sliding_window == 4096);
  CHECK(config.sliding_window_layers == std::vector<bool>{true, false, true, false});
  CHECK(config.rope_theta == 10000.0);
  CHECK(config.rope_local_theta == 10000.0);
  CHECK(config.query_pre_attn_scalar == kHeadDim);
  CHECK(config_of(metadata_file("gemma2", 46, 0, [](GgufBuilder&) {})).query_pre_attn_scalar == kHidden / kHeads);
  std::string error = user_error_of([] {
    config_of(metadata_file("gemma2", 2, 1, [](GgufBuilder& b) { b.key_f32("gemma2.rope.freq_base_swa", 5e5f); }));
  });
  CHECK(error.find("gemma2.rope.freq_base_swa") != std::string::npos);
}

TEST_CASE("gguf phi3: longrope needs both factor tensors and the original context; a window of 0 is none") {
  model::ModelConfig plain =
      config_of(metadata_file("phi3", 2, 1, [](GgufBuilder& b) { b.key_u32("phi3.attention.sliding_window", 0); }));
  CHECK(plain.architecture == model::Architecture::phi3);
  CHECK(plain.fused_projections());
  CHECK(!plain.sliding_window);
  CHECK(plain.rope_scaling.type == "default");
  model::ModelConfig longrope = config_of(
      metadata_file("phi3", 2, 1, [](GgufBuilder& b) { b.key_u32("phi3.rope.scaling.original_context_length", 4096); },
                    {"rope_factors_long.weight", "rope_factors_short.weight"}));
  CHECK(longrope.rope_scaling.type == "longrope");
  CHECK(longrope.rope_scaling.original_max_position_embeddings == 4096);
  CHECK(longrope.rope_scaling.long_factor.size() == kHeadDim / 2);
  CHECK(longrope.rope_scaling.long_factor[3] == 4.0f);
  std::string error = user_error_of([] {
    config_of(metadata_file("phi3", 3, 1,
                            [](GgufBuilder& b) { b.key_u32("phi3.rope.scaling.original_context_length", 4096); },
                            {"rope_factors_long.weight"}));
  });
  CHECK(error.find("rope_factors_short") != std::string::npos);
}

}  // TEST_SUITE
