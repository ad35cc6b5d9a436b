#pragma once
// HF tokenizers' normalizers: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip,
// StripAccents, ByteLevel, Sequence.
#include <functional>
#include <string>

#include "engine/text/json_node.hpp"

namespace vkt::text {

// Normalizes a piece of text in place.
using Normalizer = std::function<void(std::string&)>;

// tokenizer.json's "normalizer"; UserError naming the JSON path when it is not supported.
Normalizer parse_normalizer(const JsonNode& node);

}  // namespace vkt::text
