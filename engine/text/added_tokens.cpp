#include "engine/text/added_tokens.hpp"

#include <algorithm>

#include "engine/text/unicode.hpp"

namespace vkt::text {

std::vector<Piece> split_added_tokens(Piece piece, const TokenMatcher& matcher, const std::vector<AddedToken>& added) {
  if (matcher.empty()) return {std::move(piece)};
  const std::string_view text = piece.text;
  std::vector<Piece> parts;
  size_t start_offset = 0, position = 0;
  auto add_text = [&](size_t begin, size_t end) {
    if (begin < end)
      parts.push_back({std::string(text.substr(begin, end - begin)), piece.at_start && begin == 0, std::nullopt});
  };
  while (position < text.size()) {
    auto [index, length] = matcher.longest_at(text, position);
    if (index < 0) {
      position++;
      continue;
    }
    const AddedToken& token = added[static_cast<size_t>(index)];
    size_t start = position, stop = position + length;
    position = stop;  // the automaton resumes after the match, used or not
    if (token.single_word) {
      bool space_before = true, space_after = true;
      if (start > 0) {
        size_t before = previous_char_start(text, start, 0);
        size_t char_length;
        space_before = !is_word_char(decode_utf8_at(text, before, &char_length));
      }
      if (stop < text.size()) {
        size_t char_length;
        space_after = !is_word_char(decode_utf8_at(text, stop, &char_length));
      }
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) {  // take the whitespace before the token into it
      size_t new_start = start;
      while (new_start > start_offset) {
        size_t before = previous_char_start(text, new_start, 0);
        size_t char_length;
        if (!is_whitespace(decode_utf8_at(text, before, &char_length))) break;
        new_start = before;
      }
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {  // and the whitespace after it
      while (stop < text.size()) {
        size_t char_length;
        if (!is_whitespace(decode_utf8_at(text, stop, &char_length))) break;
        stop += char_length;
      }
      position = std::max(position, stop);
    }
    add_text(start_offset, start);
    parts.push_back({std::string(text.substr(start, stop - start)), false, token.id});
    start_offset = stop;
  }
  add_text(start_offset, text.size());
  return parts;
}

}  // namespace vkt::text
