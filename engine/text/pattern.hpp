#pragma once
// A pattern as HF's Split/Replace take it: {"String": "..."} (literal) or {"Regex": "..."}.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/text/json_node.hpp"
#include "engine/text/regex.hpp"

namespace vkt::text {

class Pattern {
 public:
  explicit Pattern(const JsonNode& node);
  bool is_literal() const { return !regex_; }
  const std::string& literal() const { return literal_; }
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  std::string literal_;
  std::optional<Regex> regex_;
};

// `text` with every match of `pattern` replaced by `content` (HF's Replace normalizer and decoder).
std::string replace_matches(const std::string& text, const Pattern& pattern, const std::string& content);

}  // namespace vkt::text
