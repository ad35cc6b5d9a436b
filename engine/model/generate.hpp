#pragma once
// Text generation with a KV cache: the prompt is run in blocks of up to `prefill_rows` tokens,
// then one token at a time; greedy when temperature is 0, else temperature / top-k / top-p
// sampling with a seeded generator (the same seed gives the same text).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "engine/model/session.hpp"

namespace vkt::model {

struct SamplingOptions {
  uint32_t max_new_tokens = 128;
  float temperature = 0;  // 0: greedy
  uint32_t top_k = 0;     // 0: no top-k cut
  float top_p = 1;        // 1: no nucleus cut
  uint64_t seed = 0;
  std::vector<uint32_t> stop_ids;  // end of sequence (EOS and friends); not included in the output
};

// UserError unless temperature is finite and >= 0 and top_p is in (0, 1].
void validate_sampling(const SamplingOptions& sampling);

struct GeneratorOptions {
  std::filesystem::path model;
  std::optional<std::filesystem::path> adapter;  // a PEFT adapter applied on the fly
  kernels::WeightFormat base_format = kernels::WeightFormat::f32;
  bool double_quant = true;
  kernels::DType dtype = kernels::DType::f32;
  uint32_t max_tokens = 1024;  // prompt + generated tokens the KV cache holds
  uint32_t prefill_rows = 128;
};

class Generator {
 public:
  Generator(vk::Context& context, const GeneratorOptions& options);
  // The new tokens (without the prompt). `on_token` sees each one as it is chosen.
  std::vector<uint32_t> generate(const std::vector<uint32_t>& prompt, const SamplingOptions& sampling,
                                 const std::function<void(uint32_t)>& on_token = nullptr);
  // The logits of the last step (vocab), e.g. for tests of the margin between top tokens.
  const std::vector<float>& last_logits() const { return logits_; }
  ModelSession& session() { return *session_; }

 private:
  vk::Context& context_;
  GeneratorOptions options_;
  std::unique_ptr<ModelSession> session_;
  vk::Buffer logits_buffer_;
  std::vector<float> logits_;
};

// Picks the next token from logits (vocab) with the sampling options; `uniform` in [0, 1).
uint32_t sample_token(const std::vector<float>& logits, const SamplingOptions& options, double uniform);

}  // namespace vkt::model
