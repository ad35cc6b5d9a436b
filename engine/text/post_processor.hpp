#pragma once
// HF tokenizers' post-processors: TemplateProcessing, ByteLevel, RobertaProcessing,
// BertProcessing, Sequence.
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/text/json_node.hpp"

namespace vkt::text {

// One post-processing step: the ids of the text -> the ids with special tokens around them.
using PostProcessor = std::function<std::vector<uint32_t>(std::vector<uint32_t>)>;

// tokenizer.json's "post_processor"; UserError naming the JSON path when it is not supported.
PostProcessor parse_post_processor(const JsonNode& node);

}  // namespace vkt::text
