#include "engine/text/pattern.hpp"

namespace vkt::text {

Pattern::Pattern(const JsonNode& node) {
  if (node.has("String")) {
    literal_ = node.at("String").string();
  } else if (node.has("Regex")) {
    JsonNode regex = node.at("Regex");
    try {
      regex_.emplace(regex.string());
    } catch (const RegexSyntaxError& error) {
      regex.fail(error.what());
    }
  } else {
    node.fail("must be {\"String\": ...} or {\"Regex\": ...}");
  }
}

std::vector<std::pair<size_t, size_t>> Pattern::find_all(std::string_view text) const {
  if (regex_) return regex_->find_all(text);
  std::vector<std::pair<size_t, size_t>> matches;
  if (literal_.empty()) return matches;  // HF: an empty literal matches nothing
  size_t from = 0;
  while ((from = text.find(literal_, from)) != std::string_view::npos) {
    matches.emplace_back(from, from + literal_.size());
    from += literal_.size();
  }
  return matches;
}

std::string replace_matches(const std::string& text, const Pattern& pattern, const std::string& content) {
  if (pattern.is_literal()) {  // the common case (" " <-> "▁"): no match list
    const std::string& literal = pattern.literal();
    if (literal.empty() || text.find(literal) == std::string::npos) return text;
    std::string out;
    out.reserve(text.size() + 8);
    size_t previous = 0;
    for (size_t at = text.find(literal); at != std::string::npos; at = text.find(literal, previous)) {
      out.append(text, previous, at - previous);
      out += content;
      previous = at + literal.size();
    }
    out.append(text, previous, std::string::npos);
    return out;
  }
  std::string out;
  out.reserve(text.size());
  size_t previous = 0;
  for (const auto& [begin, end] : pattern.find_all(text)) {
    out.append(text, previous, begin - previous);
    out += content;
    previous = end;
  }
  out.append(text, previous, std::string::npos);
  return out;
}

}  // namespace vkt::text
