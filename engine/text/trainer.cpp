#include "engine/text/trainer.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "engine/base/error.hpp"
#include "engine/text/byte_level.hpp"
#include "engine/text/regex.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

using nlohmann::ordered_json;

namespace {

// Splits text (document `index` of the training texts) into GPT-2 pre-tokens and counts them.
void count_words(const std::string& text, size_t index, const Regex& gpt2,
                 std::unordered_map<std::string, uint64_t>& counts) {
  size_t invalid = first_invalid_utf8(text);
  if (invalid != std::string_view::npos)
    throw UserError(
        "training text " + std::to_string(index + 1) + " is not valid UTF-8 (at byte " + std::to_string(invalid) + ")",
        "re-encode the data set as UTF-8");
  for (const auto& [begin, end] : gpt2.find_all(text))
    if (begin < end) counts[text.substr(begin, end - begin)]++;
}

// The vocabulary string of a token made of `bytes`: GPT-2's byte-to-unicode characters.
std::string token_string(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) out += byte_level_char(b);
  return out;
}

TrainedTokenizer build_json(const std::vector<std::string>& tokens, const std::vector<std::pair<int, int>>& merges,
                            const TokenizerTrainOptions& options) {
  TrainedTokenizer result;
  ordered_json vocab = ordered_json::object();
  for (size_t id = 0; id < tokens.size(); id++) vocab[token_string(tokens[id])] = id;
  ordered_json merge_list = ordered_json::array();
  for (const auto& [left, right] : merges)
    merge_list.push_back(token_string(tokens[left]) + " " + token_string(tokens[right]));
  uint32_t next = static_cast<uint32_t>(tokens.size());
  result.bos_id = next++;
  result.eos_id = next++;
  result.pad_id = next++;
  result.vocab_size = next;
  auto added = [](uint32_t id, const std::string& content) {
    return ordered_json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                        {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  ordered_json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  ordered_json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {added(result.bos_id, options.bos_token), added(result.eos_id, options.eos_token),
        added(result.pad_id, options.pad_token)}},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", options.bos_token}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", options.bos_token}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", options.bos_token}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens",
         {{options.bos_token,
           {{"id", options.bos_token}, {"ids", {result.bos_id}}, {"tokens", {options.bos_token}}}}}}}},
      {"decoder", byte_level},
      {"model", bpe_model_json(std::move(vocab), std::move(merge_list), false)}};
  result.tokenizer_json = tokenizer.dump(1);
  ordered_json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                         {"bos_token", options.bos_token},
                         {"eos_token", options.eos_token},
                         {"pad_token", options.pad_token},
                         {"model_max_length", 2048},
                         {"clean_up_tokenization_spaces", false}};
  result.tokenizer_config_json = config.dump(2);
  return result;
}

}  // namespace

TrainedTokenizer byte_level_tokenizer(const TokenizerTrainOptions& options) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; b++) tokens.push_back(std::string(1, static_cast<char>(b)));
  return build_json(tokens, {}, options);
}

TrainedTokenizer train_bpe_tokenizer(const std::vector<std::string>& texts, const TokenizerTrainOptions& options) {
  if (options.vocab_size < 256 + 3)
    throw UserError("--vocab-size must be at least 259 (256 bytes and 3 special tokens)", "e.g. 4096");
  const Regex gpt2(kGpt2Pattern);
  std::unordered_map<std::string, uint64_t> counts;
  for (size_t i = 0; i < texts.size(); i++) count_words(texts[i], i, gpt2, counts);

  // Words as symbol sequences (symbols are token ids), with their counts.
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; b++) tokens.push_back(std::string(1, static_cast<char>(b)));
  std::vector<std::pair<std::vector<int>, uint64_t>> words;
  words.reserve(counts.size());
  for (const auto& [word, count] : counts) {
    std::vector<int> symbols;
    for (unsigned char c : word) symbols.push_back(c);
    words.push_back({std::move(symbols), count});
  }
  std::sort(words.begin(), words.end());  // deterministic order regardless of hashing
  std::vector<std::pair<int, int>> merges;
  const uint32_t merge_budget = options.vocab_size - 256 - 3;
  while (merges.size() < merge_budget) {
    std::map<std::pair<int, int>, uint64_t> pairs;
    for (const auto& [symbols, count] : words)
      for (size_t i = 0; i + 1 < symbols.size(); i++) pairs[{symbols[i], symbols[i + 1]}] += count;
    std::pair<int, int> best{-1, -1};
    uint64_t best_count = 0;
    std::string best_bytes;
    for (const auto& [pair, count] : pairs) {
      if (count < best_count || count < options.min_frequency) continue;
      std::string merged = tokens[pair.first] + tokens[pair.second];
      if (count > best_count || merged < best_bytes) {
        best = pair;
        best_count = count;
        best_bytes = merged;
      }
    }
    if (best.first < 0) break;
    int id = static_cast<int>(tokens.size());
    tokens.push_back(best_bytes);
    merges.push_back(best);
    for (auto& [symbols, count] : words) {
      std::vector<int> merged;
      merged.reserve(symbols.size());
      for (size_t i = 0; i < symbols.size(); i++) {
        if (i + 1 < symbols.size() && symbols[i] == best.first && symbols[i + 1] == best.second) {
          merged.push_back(id);
          i++;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols.swap(merged);
    }
  }
  return build_json(tokens, merges, options);
}

ordered_json bpe_model_json(ordered_json vocab, ordered_json merges, bool ignore_merges) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"ignore_merges", ignore_merges},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}

}  // namespace vkt::text
