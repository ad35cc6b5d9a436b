#pragma once
// A freshly initialised model folder in HF layout, as transformers initialises a
// LlamaForCausalLM (weights ~ N(0, initializer_range), norms 1): what `vktune new-model` writes
// before pretraining, and what tests build their tiny models with.
#include <cstdint>
#include <filesystem>
#include <string>

#include "engine/model/config.hpp"
#include "engine/text/trainer.hpp"

namespace vkt::model {

struct NewModelOptions {
  double initializer_range = 0.02;
  uint64_t seed = 0;
};

// Writes config.json, model.safetensors (fp32), tokenizer.json, tokenizer_config.json and
// generation_config.json into `directory` (each atomically). config.vocab_size must cover the
// tokenizer; bos/eos/pad ids are taken from it.
void write_new_model(const std::filesystem::path& directory, ModelConfig config,
                     const text::TrainedTokenizer& tokenizer, const NewModelOptions& options = {});

// A small Llama config for tests and the demo (hidden, layers, heads given; the rest derived).
ModelConfig small_llama_config(uint32_t vocab_size, uint32_t hidden, uint32_t layers, uint32_t heads, uint32_t kv_heads,
                               uint32_t intermediate, uint32_t max_positions = 512);

}  // namespace vkt::model
