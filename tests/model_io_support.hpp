#pragma once
// Helpers shared by the model_io suite (test_model_safetensors, test_model_config,
// test_text_tokenizer): error messages, raw files, JSON documents.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/config.hpp"

namespace vkt::test {

// The model's sizes agree.
inline void check_config_sizes(const model::ModelConfig& ours, const model::ModelConfig& hf) {
  for (int64_t model::ModelConfig::*field :
       {&model::ModelConfig::hidden_size, &model::ModelConfig::intermediate_size,
        &model::ModelConfig::num_hidden_layers, &model::ModelConfig::num_attention_heads,
        &model::ModelConfig::num_key_value_heads, &model::ModelConfig::head_dim, &model::ModelConfig::vocab_size,
        &model::ModelConfig::max_position_embeddings})
    CHECK(ours.*field == hf.*field);
}

// The config.json fields a GGUF file carries, read back from it (`ours`) against the HF folder's.
inline void check_gguf_config_fields(const model::ModelConfig& ours, const model::ModelConfig& hf) {
  check_config_sizes(ours, hf);
  CHECK(static_cast<float>(ours.rms_norm_eps) == static_cast<float>(hf.rms_norm_eps));  // GGUF stores fp32
  CHECK(ours.rope_theta == hf.rope_theta);
  CHECK(ours.tie_word_embeddings == hf.tie_word_embeddings);
  CHECK(ours.qkv_bias == hf.qkv_bias);
  CHECK(ours.qk_norm == hf.qk_norm);
}

// Runs `action`, which must throw vkt::UserError; returns its message and hint together.
inline std::string user_error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const UserError& error) {
    return std::string(error.what()) + "\n---> HINT: " + error.hint();
  }
  FAIL("expected a vkt::UserError");
  return {};
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline nlohmann::json load_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(read_text_file(path));
}

}  // namespace vkt::test
