#pragma once
// Training data in TRL's JSONL formats, turned into weighted token sequences:
//   {"text": ...}                               every token is trained (weight 1)
//   {"prompt": ..., "completion": ...}          prompt tokens weigh prompt_loss_weight, completion 1
//   {"messages": [{"role", "content"}, ...]}    rendered with the chat template; assistant turns
//                                               (content + end-of-turn) are the completion
// A sequence is [BOS if the tokenizer's post-processor adds it] + prompt + completion + [EOS].
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/text/chat_template.hpp"
#include "engine/train/batcher.hpp"

namespace vkt::train {

enum class ExampleFormat { text, prompt_completion, messages };

struct ParsedExample {
  ExampleFormat format = ExampleFormat::text;
  std::vector<text::TextSegment> segments;  // in order; concatenated they are the whole sequence text
  int64_t line = 0;                         // 1-based line in the file
  bool desirable = true;                    // KTO's label (preference.hpp)
};

// Reads a JSONL file. Errors name file:line and what is wrong.
std::vector<ParsedExample> read_jsonl(const std::string& path, const text::ChatFormat& chat);

// The (role, content) turns of a JSON array of TRL messages; `field` names it in errors (file:line).
std::vector<std::pair<std::string, std::string>> message_turns(const nlohmann::json& messages, const std::string& field,
                                                               const std::string& path, int64_t line);

// Tokenization hooks (the model's tokenizer provides them).
struct TokenizerHooks {
  std::function<std::vector<uint32_t>(const std::string& text)> encode;  // no special tokens
  bool add_bos = false;                                                  // does the tokenizer's post-processor add BOS
  uint32_t bos_id = 0;
  std::vector<uint32_t> eos_ids;  // the first one is appended; any of them ends a sequence
};

struct TokenizeReport {
  int64_t examples = 0;
  int64_t truncated = 0;            // examples cut to max_length
  int64_t dropped = 0;              // examples left with no trained token after truncation
  int64_t boundary_mismatches = 0;  // prompt/completion boundary that tokenized differently (merged across)
  int64_t tokens = 0;
};

// Tokenizes examples into ids and per-token weights. Each segment boundary is found by
// tokenizing the text up to it (as TRL does) so BPE merges across a boundary are handled.
// `max_length` truncates; an example whose prompt alone reaches max_length is an error
// (UserError naming file:line) when `strict_prompt_length`, else dropped and counted.
std::vector<TokenizedExample> tokenize_examples(const std::vector<ParsedExample>& examples,
                                                const TokenizerHooks& tokenizer, double prompt_loss_weight,
                                                uint32_t max_length, const std::string& source, TokenizeReport& report,
                                                bool strict_prompt_length = true);

}  // namespace vkt::train
