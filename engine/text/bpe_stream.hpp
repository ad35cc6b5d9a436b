#pragma once
// Reading a large tokenizer.json fast: model.vocab and model.merges (~800k values for Gemma 3's
// 262k vocabulary) go straight from the JSON text into flat lists instead of the nlohmann document,
// whose std::map per object cost most of a load. Everything else becomes the usual document, with an
// empty model.vocab and model.merges in it.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace vkt::text {

struct StreamedBpeTables {
  std::vector<std::pair<std::string, uint32_t>> vocab;      // in file order
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order ("#version" lines dropped)
};

// Something the fast path does not take (a vocabulary id that is not a 32-bit unsigned integer, a
// merge that is neither "a b" nor ["a", "b"]): read the file the ordinary way instead, whose errors
// name the exact place.
struct NotStreamable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The document of `text` without model.vocab/model.merges' contents, which go to `tables`.
// nlohmann::json::parse_error when the text is not JSON; NotStreamable as above.
nlohmann::json parse_streaming_bpe(const std::string& text, StreamedBpeTables& tables);

}  // namespace vkt::text
