#pragma once
// Fill-in-the-middle training examples (`--fim-rate R --fim-spm-rate S`), as bigcode's recipe makes
// them (Megatron-LM bigcode fork, gpt_dataset.permute; Bavarian et al. 2022): with probability R a
// text is cut at two character positions drawn uniformly in [0, len] (sorted) into prefix, middle
// and suffix, each tokenized on its own, and rearranged as
//   PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
//   SPM (with probability S): <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle
// Every token is trained, as for {"text"} data. "Characters" are Unicode code points (Python's str).
// The random draws, in permute()'s order: bernoulli(R); if taken, two integers in [0, len]; then
// bernoulli(S). They come from FimRandom (splitmix64, seeded with --seed), which
// tests/reference/fim_golden.py reimplements with permute() to write the committed golden.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/text/tokenizer.hpp"
#include "engine/train/dataset.hpp"

namespace vkt::train {

// splitmix64 (Steele, Lea, Flood 2014): a tiny generator both C++ and Python reproduce bit for bit.
class FimRandom {
 public:
  explicit FimRandom(uint64_t seed) : state_(seed) {}
  uint64_t next();
  bool bernoulli(double p) { return double(next() >> 11) * 0x1.0p-53 < p; }  // a 53-bit uniform below p
  uint64_t below(uint64_t n) { return next() % n; }                          // an integer in [0, n)

 private:
  uint64_t state_;
};

struct FimTokenIds {
  uint32_t prefix = 0, suffix = 0, middle = 0;
};
// The FIM token ids: `given` "PRE,SUF,MID" (--fim-tokens), else the tokenizer's <fim_prefix>,
// <fim_suffix>, <fim_middle> (StarCoder's) or <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|> (Qwen's).
// UserError naming `tokenizer_file` when they are absent.
FimTokenIds find_fim_tokens(const text::Tokenizer& tokenizer, const std::string& given,
                            const std::string& tokenizer_file);

struct FimSplit {
  bool applied = false;  // false: the text stays whole
  bool spm = false;
  std::string prefix, middle, suffix;
};
// permute()'s draws on `text` (UTF-8; cut at code point boundaries).
FimSplit fim_split(const std::string& text, FimRandom& random, double fim_rate, double spm_rate);
// The tokens of a split: its pieces tokenized apart and rearranged (or the whole text when not applied).
std::vector<uint32_t> fim_token_ids(const FimSplit& split, const TokenizerHooks& tokenizer, const FimTokenIds& ids);

// FIM settings of a run; rate 0: off.
struct FimSettings {
  double rate = 0, spm_rate = 0.5;
  uint64_t seed = 42;
  FimTokenIds ids;
};
// tokenize_examples for {"text"} data with FIM: each example's sequence is [BOS if the tokenizer adds
// it] + fim_token_ids + [EOS], every token weight 1, truncated at max_length (counted). UserError
// naming source:line for an example of another format (FIM rearranges plain text).
std::vector<TokenizedExample> fim_tokenize_examples(const std::vector<ParsedExample>& examples,
                                                    const TokenizerHooks& tokenizer, const FimSettings& settings,
                                                    uint32_t max_length, const std::string& source,
                                                    TokenizeReport& report);

}  // namespace vkt::train
