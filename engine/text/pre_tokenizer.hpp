#pragma once
// HF tokenizers' pre-tokenizers: ByteLevel (with or without its GPT-2 regex), Split, Metaspace,
// Digits, Whitespace, WhitespaceSplit, Punctuation, Sequence.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/text/json_node.hpp"

namespace vkt::text {

// A piece of text on its way to ids.
struct Piece {
  std::string text;
  bool at_start = false;       // begins at offset 0 of the original text (Metaspace "first")
  std::optional<uint32_t> id;  // an added token, already resolved
};

// Receives the pieces a pre-tokenizer step makes; pieces stream through the steps one at a time
// so that a long text never exists as a list of all its pieces.
class PieceSink {
 public:
  virtual void take(Piece&& piece) = 0;

 protected:
  ~PieceSink() = default;
};

// One step of pre-tokenization (a Sequence is flattened into its steps): a piece in, its parts out.
using PreTokenizerStep = std::function<void(Piece&& piece, PieceSink& sink)>;

// tokenizer.json's "pre_tokenizer", appended to `steps`; UserError naming the JSON path when it is
// not supported.
void parse_pre_tokenizer(const JsonNode& node, std::vector<PreTokenizerStep>& steps);

}  // namespace vkt::text
