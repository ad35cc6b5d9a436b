#pragma once
// The BPE model of tokenizer.json: vocabulary, merges, byte fallback, unk; encodes one pre-token.
// Also llama.cpp's SentencePiece model (vktune's own model type "LlamaCppSpm", which the GGUF
// tokenizers of kind `llama` become: engine/model/gguf_tokenizer.cpp): no merges, a score per token.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/text/bpe_stream.hpp"
#include "engine/text/json_node.hpp"
#include "engine/text/vocabulary.hpp"

namespace vkt::text {

struct MergeResult {
  uint32_t rank;
  uint32_t new_id;
};

struct BpeModel {
  Vocabulary vocab;
  FlatU64Map<MergeResult> merges;  // (left id << 32 | right id) -> (rank, merged id)
  std::optional<uint32_t> unk_id;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  std::array<std::optional<uint32_t>, 256> byte_ids;  // <0xNN> tokens
  // LlamaCppSpm: the score of each id (vocab.max_id() + 1 entries); empty for BPE.
  std::vector<float> spm_scores;
  mutable std::atomic<bool> warned_dropped{false};
  // Words seen before, as HF's BPE cache: natural text repeats its words, so most pre-tokens are
  // found here. Filled until it holds kCacheCapacity words, then only read.
  static constexpr size_t kCacheCapacity = 10000, kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<uint32_t>> cache;

  // Appends the ids of one pre-token to `out`. Thread-safe (the mutex guards the word cache).
  void tokenize(const std::string& text, std::vector<uint32_t>& out) const;

 private:
  void tokenize_uncached(const std::string& text, std::vector<uint32_t>& out) const;
  // llama.cpp's llm_tokenizer_spm_session::tokenize (engine/text/spm.cpp).
  void tokenize_spm(const std::string& text, std::vector<uint32_t>& out) const;
};

// tokenizer.json's "model" (type BPE, or LlamaCppSpm: "vocab", "scores" by id, optional "unk_token");
// UserError naming the JSON path when it is something else.
// With `streamed`, the vocabulary and merges come from there (engine/text/bpe_stream.hpp), not `node`.
std::unique_ptr<BpeModel> parse_bpe_model(const JsonNode& node, const StreamedBpeTables* streamed = nullptr);

}  // namespace vkt::text
