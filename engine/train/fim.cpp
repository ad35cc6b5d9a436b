#include "engine/train/fim.hpp"

#include <algorithm>

#include "engine/base/error.hpp"

namespace vkt::train {

uint64_t FimRandom::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

FimTokenIds find_fim_tokens(const text::Tokenizer& tokenizer, const std::string& given,
                            const std::string& tokenizer_file) {
  std::vector<std::vector<std::string>> spellings;
  if (!given.empty()) {
    std::vector<std::string> names;
    size_t start = 0;
    while (true) {
      size_t comma = given.find(',', start);
      names.push_back(given.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (names.size() != 3 || std::any_of(names.begin(), names.end(), [](const auto& n) { return n.empty(); }))
      throw UserError("--fim-tokens " + given + ": expected three tokens PREFIX,SUFFIX,MIDDLE",
                      "e.g. --fim-tokens '<fim_prefix>,<fim_suffix>,<fim_middle>'");
    spellings.push_back(names);
  } else {
    spellings = {{"<fim_prefix>", "<fim_suffix>", "<fim_middle>"},
                 {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"}};
  }
  for (const auto& names : spellings) {
    auto prefix = tokenizer.token_to_id(names[0]), suffix = tokenizer.token_to_id(names[1]),
         middle = tokenizer.token_to_id(names[2]);
    if (prefix && suffix && middle) return {*prefix, *suffix, *middle};
    if (!given.empty())
      throw UserError(tokenizer_file + " has no token " +
                          (!prefix   ? names[0]
                           : !suffix ? names[1]
                                     : names[2]) +
                          " (from --fim-tokens)",
                      "give tokens of this tokenizer's vocabulary or added tokens");
  }
  throw UserError(tokenizer_file +
                      " has no FIM tokens (<fim_prefix>, <fim_suffix>, <fim_middle>, or Qwen's "
                      "<|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>)",
                  "name the tokenizer's own with --fim-tokens PRE,SUF,MID, or add them to the tokenizer "
                  "(added_tokens, with rows in the embedding table)");
}

namespace {
// Byte offsets of the code point starts of UTF-8 `text`, and its byte length last.
std::vector<size_t> code_point_offsets(const std::string& text) {
  std::vector<size_t> offsets;
  for (size_t i = 0; i < text.size(); i++)
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) offsets.push_back(i);
  offsets.push_back(text.size());
  return offsets;
}
}  // namespace

FimSplit fim_split(const std::string& text, FimRandom& random, double fim_rate, double spm_rate) {
  FimSplit split;
  if (!random.bernoulli(fim_rate)) {
    split.prefix = text;
    return split;
  }
  const std::vector<size_t> offsets = code_point_offsets(text);
  const uint64_t characters = offsets.size() - 1;
  uint64_t first = random.below(characters + 1), second = random.below(characters + 1);
  if (second < first) std::swap(first, second);
  split.applied = true;
  split.prefix = text.substr(0, offsets[first]);
  split.middle = text.substr(offsets[first], offsets[second] - offsets[first]);
  split.suffix = text.substr(offsets[second]);
  split.spm = random.bernoulli(spm_rate);
  return split;
}

std::vector<uint32_t> fim_token_ids(const FimSplit& split, const TokenizerHooks& tokenizer, const FimTokenIds& ids) {
  auto encode = [&](const std::string& text) {
    return text.empty() ? std::vector<uint32_t>{} : tokenizer.encode(text);
  };
  if (!split.applied) return encode(split.prefix);
  const std::vector<uint32_t> prefix = encode(split.prefix), middle = encode(split.middle),
                              suffix = encode(split.suffix);
  std::vector<uint32_t> out;
  auto append = [&out](const std::vector<uint32_t>& part) { out.insert(out.end(), part.begin(), part.end()); };
  if (split.spm) {
    out = {ids.prefix, ids.suffix};
    append(suffix);
    out.push_back(ids.middle);
    append(prefix);
    append(middle);
  } else {
    out = {ids.prefix};
    append(prefix);
    out.push_back(ids.suffix);
    append(suffix);
    out.push_back(ids.middle);
    append(middle);
  }
  return out;
}

std::vector<TokenizedExample> fim_tokenize_examples(const std::vector<ParsedExample>& examples,
                                                    const TokenizerHooks& tokenizer, const FimSettings& settings,
                                                    uint32_t max_length, const std::string& source,
                                                    TokenizeReport& report) {
  FimRandom random(settings.seed);
  std::vector<TokenizedExample> out;
  for (const ParsedExample& example : examples) {
    if (example.format != ExampleFormat::text)
      throw UserError(source + ":" + std::to_string(example.line) +
                          ": --fim-rate rearranges plain text: this line is not {\"text\": ...}",
                      "use {\"text\"} data for FIM (code files, documents), or drop --fim-rate");
    std::string text;
    for (const auto& segment : example.segments) text += segment.text;
    report.examples++;
    TokenizedExample tokens;
    if (tokenizer.add_bos) tokens.ids.push_back(tokenizer.bos_id);
    const std::vector<uint32_t> body =
        fim_token_ids(fim_split(text, random, settings.rate, settings.spm_rate), tokenizer, settings.ids);
    tokens.ids.insert(tokens.ids.end(), body.begin(), body.end());
    if (!tokenizer.eos_ids.empty()) tokens.ids.push_back(tokenizer.eos_ids.front());
    tokens.weights.assign(tokens.ids.size(), 1.0f);
    if (tokenizer.add_bos) tokens.weights[0] = 0.0f;
    if (tokens.ids.size() > max_length) {
      tokens.ids.resize(max_length);
      tokens.weights.resize(max_length);
      report.truncated++;
    }
    report.tokens += static_cast<int64_t>(tokens.ids.size());
    out.push_back(std::move(tokens));
  }
  if (out.empty()) throw UserError(source + ": no example is left to train on", "check the data");
  return out;
}

}  // namespace vkt::train
