#pragma once
// Training a byte-level BPE tokenizer (GPT-2 style: the GPT-2 regex splits text into words, bytes
// are the base alphabet, the most frequent adjacent pair is merged until the vocabulary is full)
// and writing it as an HF tokenizer.json that text::Tokenizer (and HF tokenizers) load.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vkt::text {

struct TokenizerTrainOptions {
  uint32_t vocab_size = 4096;  // bytes (256) + merges + special tokens
  std::string bos_token = "<|begin_of_text|>";
  std::string eos_token = "<|end_of_text|>";
  std::string pad_token = "<|pad|>";
  uint32_t min_frequency = 2;  // pairs seen fewer times are not merged
};

struct TrainedTokenizer {
  std::string tokenizer_json;         // HF tokenizer.json
  std::string tokenizer_config_json;  // bos/eos/pad tokens, model_max_length
  uint32_t vocab_size = 0;
  uint32_t bos_id = 0, eos_id = 0, pad_id = 0;
};

// Trains on `texts` (each a document). Deterministic: ties between equally frequent pairs go to
// the pair whose merged bytes sort first. UserError when a text is not valid UTF-8 or the GPT-2
// pattern fails to match it.
TrainedTokenizer train_bpe_tokenizer(const std::vector<std::string>& texts, const TokenizerTrainOptions& options);

// A tokenizer with no merges: one token per byte plus the special tokens (tests, tiny models).
TrainedTokenizer byte_level_tokenizer(const TokenizerTrainOptions& options = {});

// The "model" object of a BPE tokenizer.json without dropout, unk token, affixes or byte fallback
// (what this trainer writes, and the GGUF tokenizers of engine/model/gguf_tokenizer.cpp).
nlohmann::ordered_json bpe_model_json(nlohmann::ordered_json vocab, nlohmann::ordered_json merges, bool ignore_merges);

}  // namespace vkt::text
