#pragma once
// HF tokenizers' decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder,
// Sequence.
#include <functional>
#include <string>
#include <vector>

#include "engine/text/json_node.hpp"

namespace vkt::text {

// Turns the tokens of the ids being decoded into text pieces, in place (joined afterwards).
using Decoder = std::function<void(std::vector<std::string>&)>;

// tokenizer.json's "decoder"; UserError naming the JSON path when it is not supported.
Decoder parse_decoder(const JsonNode& node);

}  // namespace vkt::text
