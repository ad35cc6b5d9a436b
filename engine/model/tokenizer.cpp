#include "engine/model/tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"

namespace vkt::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kTokenizerHint =
    "the tokenizer.json is damaged or was written by an incompatible tool: download the model's tokenizer.json again";

// ======================= UTF-8 and Unicode properties =======================

size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;  // not a lead byte: only reached on invalid input, which is validated away first
}

// Code point of the (valid) UTF-8 sequence at text[offset]; sets *length.
uint32_t decode_utf8_at(std::string_view text, size_t offset, size_t* length) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data()) + offset;
  size_t n = std::min(utf8_sequence_length(bytes[0]), text.size() - offset);
  *length = n;
  if (n == 1) return bytes[0];
  uint32_t cp = bytes[0] & (0xff >> (n + 1));
  for (size_t i = 1; i < n; i++) cp = (cp << 6) | (bytes[i] & 0x3f);
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::string utf8_of(uint32_t cp) {
  std::string text;
  append_utf8(text, cp);
  return text;
}

// Byte offset of the first byte that is not part of well-formed UTF-8, or npos.
size_t first_invalid_utf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(bytes + offset, static_cast<utf8proc_ssize_t>(text.size() - offset), &cp);
    if (n <= 0) return offset;
    offset += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes_text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(bytes_text.data());
  const size_t size = bytes_text.size();
  std::string out;
  out.reserve(size);
  size_t i = 0;
  while (i < size) {
    unsigned char lead = bytes[i];
    if (lead < 0x80) {
      out += static_cast<char>(lead);
      i++;
      continue;
    }
    size_t need = 0;
    unsigned char low = 0x80, high = 0xbf;  // allowed range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) need = 1;
    else if (lead == 0xe0) need = 2, low = 0xa0;
    else if (lead >= 0xe1 && lead <= 0xec) need = 2;
    else if (lead == 0xed) need = 2, high = 0x9f;
    else if (lead >= 0xee && lead <= 0xef) need = 2;
    else if (lead == 0xf0) need = 3, low = 0x90;
    else if (lead >= 0xf1 && lead <= 0xf3) need = 3;
    else if (lead == 0xf4) need = 3, high = 0x8f;
    if (need == 0) {
      out += "\xef\xbf\xbd";
      i++;
      continue;
    }
    size_t j = 1;
    for (; j <= need && i + j < size; j++) {
      unsigned char c = bytes[i + j];
      bool ok = j == 1 ? (c >= low && c <= high) : (c >= 0x80 && c <= 0xbf);
      if (!ok) break;
    }
    if (j == need + 1) {
      out.append(bytes_text.substr(i, need + 1));
    } else {
      out += "\xef\xbf\xbd";
    }
    i += j;
  }
  return out;
}

// Rust's char::is_whitespace (the Unicode White_Space property).
bool is_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

utf8proc_category_t category(uint32_t cp) { return utf8proc_category(static_cast<utf8proc_int32_t>(cp)); }

bool is_letter(utf8proc_category_t c) { return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO; }
bool is_mark(utf8proc_category_t c) { return c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME; }
// Rust's char::is_numeric: Nd, Nl, No.
bool is_numeric(uint32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}
// The regex crate's Unicode \w: alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(uint32_t cp) {
  auto c = category(cp);
  return is_letter(c) || is_mark(c) || c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL ||
         c == UTF8PROC_CATEGORY_PC || cp == 0x200c || cp == 0x200d;
}
bool is_punctuation(uint32_t cp) {
  if (cp < 0x80) return std::ispunct(static_cast<int>(cp)) != 0;
  auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

// Calls f(offset, length, code point) for each character of valid UTF-8 text.
template <class F>
void for_each_char(std::string_view text, F&& f) {
  size_t offset = 0;
  while (offset < text.size()) {
    size_t length;
    uint32_t cp = decode_utf8_at(text, offset, &length);
    f(offset, length, cp);
    offset += length;
  }
}

// ======================= the GPT-2 byte <-> unicode map =======================

struct ByteLevelMap {
  std::array<std::string, 256> byte_to_char;   // byte -> UTF-8 of its stand-in character
  std::array<int16_t, 0x180> char_to_byte{};   // stand-in code point -> byte, -1 when not a stand-in

  ByteLevelMap() {
    char_to_byte.fill(-1);
    // Printable bytes stand for themselves; the others (controls, space, 0x7f-0xa0, 0xad) are
    // numbered from U+0100 in byte order (openai/gpt-2 encoder.py bytes_to_unicode).
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; b++) printable[b] = true;
    for (int b = 0xa1; b <= 0xac; b++) printable[b] = true;
    for (int b = 0xae; b <= 0xff; b++) printable[b] = true;
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
      uint32_t cp = printable[b] ? static_cast<uint32_t>(b) : next++;
      byte_to_char[b] = utf8_of(cp);
      char_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap map;
  return map;
}

std::string bytes_to_byte_level(std::string_view text) {
  const auto& map = byte_level_map();
  std::string out(text.size() * 2, '\0');  // every stand-in character is 1 or 2 bytes of UTF-8
  size_t length = 0;
  for (unsigned char byte : text) {
    const std::string& stand_in = map.byte_to_char[byte];
    out[length++] = stand_in[0];
    if (stand_in.size() == 2) out[length++] = stand_in[1];
  }
  out.resize(length);
  return out;
}

// ======================= JSON access with paths for errors =======================

class Node {
 public:
  Node(const json& value, std::string path, const std::string& where) : value_(&value), path_(std::move(path)), where_(&where) {}

  const json& value() const { return *value_; }
  const std::string& path() const { return path_; }
  const std::string& where() const { return *where_; }

  [[noreturn]] void fail(const std::string& problem, const std::string& hint = kTokenizerHint) const {
    throw UserError(*where_ + ": " + (path_.empty() ? std::string("(top level)") : path_) + ": " + problem, hint);
  }

  std::string child_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  bool has(const char* key) const { return value_->is_object() && value_->contains(key) && !(*value_)[key].is_null(); }
  Node at(const char* key) const {
    if (!value_->is_object()) fail("must be an object, got " + value_->dump());
    if (!has(key)) Node(*value_, child_path(key), *where_).fail("is missing");
    return Node((*value_)[key], child_path(key), *where_);
  }
  std::optional<Node> get(const char* key) const {
    if (!has(key)) return std::nullopt;
    return Node((*value_)[key], child_path(key), *where_);
  }
  Node operator[](size_t index) const {
    return Node((*value_)[index], path_ + "[" + std::to_string(index) + "]", *where_);
  }
  size_t size() const {
    if (!value_->is_array()) fail("must be a list, got " + value_->dump().substr(0, 80));
    return value_->size();
  }

  std::string string() const {
    if (!value_->is_string()) fail("must be a string, got " + value_->dump().substr(0, 80));
    return value_->get<std::string>();
  }
  bool boolean() const {
    if (!value_->is_boolean()) fail("must be true or false, got " + value_->dump().substr(0, 80));
    return value_->get<bool>();
  }
  uint64_t unsigned_integer() const {
    if (!value_->is_number_integer() || (!value_->is_number_unsigned() && value_->get<int64_t>() < 0)) fail("must be a non-negative integer, got " + value_->dump().substr(0, 80));
    return value_->get<uint64_t>();
  }
  uint32_t id() const {
    uint64_t value = unsigned_integer();
    if (value > 0xfffffffeull) fail("token id " + std::to_string(value) + " does not fit 32 bits");
    return static_cast<uint32_t>(value);
  }
  // One character (Metaspace's replacement, Strip's content).
  uint32_t character() const {
    std::string text = string();
    size_t length = 0;
    if (text.empty() || first_invalid_utf8(text) != std::string_view::npos ||
        (decode_utf8_at(text, 0, &length), length != text.size()))
      fail("must be exactly one character, got \"" + text + "\"");
    return decode_utf8_at(text, 0, &length);
  }
  bool boolean_or(const char* key, bool fallback) const { return has(key) ? at(key).boolean() : fallback; }
  std::string type() const { return has("type") ? at("type").string() : std::string(); }

 private:
  const json* value_;
  std::string path_;
  const std::string* where_;
};

// ======================= regular expressions (PCRE2) =======================

class Regex {
 public:
  Regex(const std::string& pattern, const Node& node) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (!code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof message);
      node.fail("invalid regular expression at offset " + std::to_string(error_offset) + ": " +
                reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is used if it fails
    code_ = std::shared_ptr<pcre2_code>(code, pcre2_code_free);
  }

  // Non-overlapping matches, left to right, with the iteration rules of HF's Oniguruma wrapper:
  // an empty match right where the previous match ended is skipped (and the search moves on by one
  // character), so the loop always progresses.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> matches;
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_.get(), nullptr);
    size_t search_from = 0;
    std::optional<size_t> last_match_end;
    while (search_from <= text.size()) {
      int result = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), search_from,
                               PCRE2_NO_UTF_CHECK, data, nullptr);
      if (result < 0) {
        if (result != PCRE2_ERROR_NOMATCH) {
          pcre2_match_data_free(data);
          throw UserError("regular expression matching failed (PCRE2 error " + std::to_string(result) + ")",
                          "the input text may be too complex for the tokenizer's pattern");
        }
        break;
      }
      PCRE2_SIZE* vector = pcre2_get_ovector_pointer(data);
      size_t begin = vector[0], end = vector[1];
      if (begin == end && last_match_end && *last_match_end == end) {
        if (search_from >= text.size()) break;
        size_t length;
        decode_utf8_at(text, search_from, &length);
        search_from += length;
        continue;
      }
      matches.emplace_back(begin, end);
      search_from = end;
      last_match_end = end;
    }
    pcre2_match_data_free(data);
    return matches;
  }

 private:
  std::shared_ptr<pcre2_code> code_;
};

// A pattern as HF's Split/Replace take it: {"String": "..."} (literal) or {"Regex": "..."}.
class Pattern {
 public:
  explicit Pattern(const Node& node) {
    if (node.has("String")) {
      literal_ = node.at("String").string();
    } else if (node.has("Regex")) {
      regex_.emplace(node.at("Regex").string(), node.at("Regex"));
    } else {
      node.fail("must be {\"String\": ...} or {\"Regex\": ...}");
    }
  }
  bool is_literal() const { return !regex_; }
  const std::string& literal() const { return literal_; }
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const {
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

 private:
  std::string literal_;
  std::optional<Regex> regex_;
};

// ======================= splitting with HF's delimiter behaviours =======================

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

SplitBehavior parse_behavior(const Node& node) {
  std::string name = node.string();
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  node.fail("unknown split behavior \"" + name + "\"",
            "one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
}

struct Span {
  size_t begin, end;
  bool is_match;
};

// Matches of a character predicate: each matching character is its own match.
template <class Predicate>
std::vector<std::pair<size_t, size_t>> char_matches(std::string_view text, Predicate&& predicate) {
  std::vector<std::pair<size_t, size_t>> matches;
  for_each_char(text, [&](size_t offset, size_t length, uint32_t cp) {
    if (predicate(cp)) matches.emplace_back(offset, offset + length);
  });
  return matches;
}

// HF's NormalizedString::split: calls keep(begin, end) for each byte range that survives, in
// order. The text is seen as alternating non-match / match spans (HF's Pattern::find_matches;
// `invert` swaps the two); `matches` are sorted and do not overlap.
template <class Keep>
void split_ranges(size_t length, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                  bool invert, Keep&& keep) {
  auto for_each_span = [&](auto&& visit) {
    size_t previous = 0;
    for (const auto& [begin, end] : matches) {
      if (previous != begin) visit(previous, begin, invert);
      visit(begin, end, !invert);
      previous = end;
    }
    if (previous != length) visit(previous, length, invert);
  };
  switch (behavior) {
    case SplitBehavior::isolated:
      for_each_span([&](size_t begin, size_t end, bool) { keep(begin, end); });
      return;
    case SplitBehavior::removed:
      for_each_span([&](size_t begin, size_t end, bool is_match) {
        if (!is_match) keep(begin, end);
      });
      return;
    case SplitBehavior::contiguous:
    case SplitBehavior::merged_with_previous: {
      // contiguous: runs of equal flags merge; merged_with_previous: a match joins the span before it.
      bool have = false, previous_match = false;
      size_t current_begin = 0, current_end = 0;
      for_each_span([&](size_t begin, size_t end, bool is_match) {
        bool extend = have && (behavior == SplitBehavior::contiguous ? is_match == previous_match
                                                                     : (is_match && !previous_match));
        if (extend) {
          current_end = end;
        } else {
          if (have) keep(current_begin, current_end);
          current_begin = begin, current_end = end, have = true;
        }
        previous_match = is_match;
      });
      if (have) keep(current_begin, current_end);
      return;
    }
    case SplitBehavior::merged_with_next: {  // a match joins the span after it: walk backwards
      std::vector<Span> spans;
      for_each_span([&](size_t begin, size_t end, bool is_match) { spans.push_back({begin, end, is_match}); });
      std::vector<std::pair<size_t, size_t>> kept;
      bool previous_match = false;
      for (auto span = spans.rbegin(); span != spans.rend(); ++span) {
        if (span->is_match && !previous_match && !kept.empty()) kept.back().first = span->begin;
        else kept.emplace_back(span->begin, span->end);
        previous_match = span->is_match;
      }
      for (auto range = kept.rbegin(); range != kept.rend(); ++range) keep(range->first, range->second);
      return;
    }
  }
}

// ======================= pieces of text on their way to ids =======================

struct Piece {
  std::string text;
  bool at_start = false;           // begins at offset 0 of the original text (Metaspace "first")
  std::optional<uint32_t> id;      // an added token, already resolved
};

// Receives the pieces a pre-tokenizer step makes; pieces stream through the steps one at a time
// so that a long text never exists as a list of all its pieces.
class PieceSink {
 public:
  virtual void take(Piece&& piece) = 0;

 protected:
  ~PieceSink() = default;
};

// Passes text[begin, end) of `piece` on (nothing when empty).
void emit_range(const Piece& piece, size_t begin, size_t end, PieceSink& sink) {
  if (begin < end) sink.take({piece.text.substr(begin, end - begin), piece.at_start && begin == 0, std::nullopt});
}

// ======================= normalizers =======================

using Normalizer = std::function<void(std::string&)>;

std::string utf8proc_transform(const std::string& text, int options) {
  utf8proc_uint8_t* result = nullptr;
  utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                         static_cast<utf8proc_ssize_t>(text.size()), &result,
                                         static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  if (length < 0) throw UserError(std::string("unicode normalization failed: ") + utf8proc_errmsg(length));
  std::string out(reinterpret_cast<char*>(result), static_cast<size_t>(length));
  std::free(result);
  return out;
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

std::string strip_whitespace(const std::string& text, bool left, bool right) {
  size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end) {
      size_t length;
      if (!is_whitespace(decode_utf8_at(text, begin, &length))) break;
      begin += length;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80) start--;
      size_t length;
      if (!is_whitespace(decode_utf8_at(text, start, &length))) break;
      end = start;
    }
  }
  return text.substr(begin, end - begin);
}

Normalizer parse_normalizer(const Node& node) {
  std::string type = node.type();
  if (type == "Sequence") {
    Node list = node.at("normalizers");
    std::vector<Normalizer> steps;
    for (size_t i = 0; i < list.size(); i++) steps.push_back(parse_normalizer(list[i]));
    return [steps](std::string& text) {
      for (const auto& step : steps) step(text);
    };
  }
  if (type == "NFC") return [](std::string& text) { text = utf8proc_transform(text, UTF8PROC_COMPOSE); };
  if (type == "NFD") return [](std::string& text) { text = utf8proc_transform(text, UTF8PROC_DECOMPOSE); };
  if (type == "NFKC") return [](std::string& text) { text = utf8proc_transform(text, UTF8PROC_COMPOSE | UTF8PROC_COMPAT); };
  if (type == "NFKD") return [](std::string& text) { text = utf8proc_transform(text, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); };
  if (type == "Lowercase") {
    return [](std::string& text) {
      std::string out;
      out.reserve(text.size());
      for_each_char(text, [&](size_t, size_t, uint32_t cp) {
        // Rust's char::to_lowercase: U+0130 is the one character whose lowercase is two characters.
        if (cp == 0x130) out += "i\xcc\x87";
        else append_utf8(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
      });
      text = std::move(out);
    };
  }
  if (type == "Prepend") {
    std::string prefix = node.at("prepend").string();
    return [prefix](std::string& text) {
      if (!text.empty()) text = prefix + text;
    };
  }
  if (type == "Replace") {
    auto pattern = std::make_shared<Pattern>(node.at("pattern"));
    std::string content = node.at("content").string();
    return [pattern, content](std::string& text) { text = replace_matches(text, *pattern, content); };
  }
  if (type == "Strip") {
    bool left = node.boolean_or("strip_left", true), right = node.boolean_or("strip_right", true);
    return [left, right](std::string& text) { text = strip_whitespace(text, left, right); };
  }
  if (type == "StripAccents") {
    return [](std::string& text) {
      std::string out;
      for_each_char(text, [&](size_t offset, size_t length, uint32_t cp) {
        if (!is_mark(category(cp))) out.append(text, offset, length);
      });
      text = std::move(out);
    };
  }
  if (type == "ByteLevel") return [](std::string& text) { text = bytes_to_byte_level(text); };
  node.fail("normalizer type \"" + type + "\" is not supported",
            "supported normalizers: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, StripAccents, ByteLevel, "
            "Sequence");
}

// ======================= pre-tokenizers =======================

// One step of pre-tokenization (a Sequence is flattened into its steps): a piece in, its parts out.
using PreTokenizerStep = std::function<void(Piece&& piece, PieceSink& sink)>;

// GPT-2's pattern, built into HF's ByteLevel pre-tokenizer.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void parse_pre_tokenizer(const Node& node, std::vector<PreTokenizerStep>& steps) {
  std::string type = node.type();
  if (type == "Sequence") {
    Node list = node.at("pretokenizers");
    for (size_t i = 0; i < list.size(); i++) parse_pre_tokenizer(list[i], steps);
    return;
  }
  if (type == "ByteLevel") {
    bool add_prefix_space = node.boolean_or("add_prefix_space", true);
    bool use_regex = node.boolean_or("use_regex", true);
    auto regex = std::make_shared<Regex>(kGpt2Pattern, node);
    steps.push_back([add_prefix_space, use_regex, regex](Piece&& piece, PieceSink& sink) {
      if (add_prefix_space && piece.text[0] != ' ') piece.text.insert(piece.text.begin(), ' ');
      // Split (optionally), then spell every byte of each part with its stand-in character.
      auto emit_mapped = [&](size_t begin, size_t end) {
        if (begin < end)
          sink.take({bytes_to_byte_level(std::string_view(piece.text).substr(begin, end - begin)),
                     piece.at_start && begin == 0, std::nullopt});
      };
      if (use_regex) split_ranges(piece.text.size(), regex->find_all(piece.text), SplitBehavior::isolated, false, emit_mapped);
      else emit_mapped(0, piece.text.size());
    });
    return;
  }
  if (type == "Split") {
    auto pattern = std::make_shared<Pattern>(node.at("pattern"));
    SplitBehavior behavior = parse_behavior(node.at("behavior"));
    bool invert = node.boolean_or("invert", false);
    steps.push_back([pattern, behavior, invert](Piece&& piece, PieceSink& sink) {
      split_ranges(piece.text.size(), pattern->find_all(piece.text), behavior, invert,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
    return;
  }
  if (type == "Metaspace") {
    uint32_t replacement = node.at("replacement").character();
    std::string replacement_text = utf8_of(replacement);
    std::string scheme = "always";
    if (node.has("prepend_scheme")) scheme = node.at("prepend_scheme").string();
    if (node.has("add_prefix_space") && !node.at("add_prefix_space").boolean()) scheme = "never";
    if (scheme != "always" && scheme != "first" && scheme != "never")
      node.at("prepend_scheme").fail("must be \"first\", \"always\" or \"never\", got \"" + scheme + "\"");
    bool split = node.boolean_or("split", true);
    steps.push_back([replacement, replacement_text, scheme, split](Piece&& piece, PieceSink& sink) {
      std::string replaced;
      replaced.reserve(piece.text.size() + 8);
      for (char c : piece.text) {
        if (c == ' ') replaced += replacement_text;
        else replaced += c;
      }
      piece.text = std::move(replaced);
      bool starts_with_replacement = piece.text.compare(0, replacement_text.size(), replacement_text) == 0;
      if (!starts_with_replacement && (scheme == "always" || (scheme == "first" && piece.at_start)))
        piece.text.insert(0, replacement_text);
      if (!split) {
        sink.take(std::move(piece));
        return;
      }
      auto matches = char_matches(piece.text, [&](uint32_t cp) { return cp == replacement; });
      split_ranges(piece.text.size(), matches, SplitBehavior::merged_with_next, false,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
    return;
  }
  // Character-class splitters.
  auto add_char_split = [&](bool (*predicate)(uint32_t), SplitBehavior behavior) {
    steps.push_back([predicate, behavior](Piece&& piece, PieceSink& sink) {
      split_ranges(piece.text.size(), char_matches(piece.text, predicate), behavior, false,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
  };
  if (type == "Digits") {
    add_char_split(is_numeric, node.boolean_or("individual_digits", false) ? SplitBehavior::isolated : SplitBehavior::contiguous);
    return;
  }
  if (type == "WhitespaceSplit") {
    add_char_split(is_whitespace, SplitBehavior::removed);
    return;
  }
  if (type == "Punctuation") {
    add_char_split(is_punctuation, node.has("behavior") ? parse_behavior(node.at("behavior")) : SplitBehavior::isolated);
    return;
  }
  if (type == "Whitespace") {
    // \w+|[^\w\s]+ with the regex crate's Unicode \w; the matches are kept, the rest removed.
    auto regex = std::make_shared<Regex>(
        R"([\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\x{200C}\x{200D}]+|[^\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\x{200C}\x{200D}\s]+)", node);
    steps.push_back([regex](Piece&& piece, PieceSink& sink) {
      split_ranges(piece.text.size(), regex->find_all(piece.text), SplitBehavior::removed, true,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
    return;
  }
  node.fail("pre-tokenizer type \"" + type + "\" is not supported",
            "supported pre-tokenizers: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, "
            "Sequence");
}

// ======================= decoders =======================

using Decoder = std::function<void(std::vector<std::string>&)>;

Decoder parse_decoder(const Node& node) {
  std::string type = node.type();
  if (type == "Sequence") {
    Node list = node.at("decoders");
    std::vector<Decoder> steps;
    for (size_t i = 0; i < list.size(); i++) steps.push_back(parse_decoder(list[i]));
    return [steps](std::vector<std::string>& tokens) {
      for (const auto& step : steps) step(tokens);
    };
  }
  if (type == "ByteLevel") {
    return [](std::vector<std::string>& tokens) {
      const auto& map = byte_level_map();
      std::string bytes;
      for (const auto& token : tokens) {
        // A token whose characters are all stand-ins becomes their bytes; any other token (an
        // added token such as "<|eot_id|>" is made of stand-ins too) is taken as it is.
        std::string decoded;
        bool all_mapped = true;
        for_each_char(token, [&](size_t, size_t, uint32_t cp) {
          if (cp < map.char_to_byte.size() && map.char_to_byte[cp] >= 0) decoded += static_cast<char>(map.char_to_byte[cp]);
          else all_mapped = false;
        });
        bytes += all_mapped ? decoded : token;
      }
      tokens = {utf8_lossy(bytes)};
    };
  }
  if (type == "Metaspace") {
    uint32_t replacement = node.at("replacement").character();
    std::string scheme = "always";
    if (node.has("prepend_scheme")) scheme = node.at("prepend_scheme").string();
    if (node.has("add_prefix_space") && !node.at("add_prefix_space").boolean()) scheme = "never";
    return [replacement, scheme](std::vector<std::string>& tokens) {
      for (size_t i = 0; i < tokens.size(); i++) {
        std::string out;
        for_each_char(tokens[i], [&](size_t offset, size_t length, uint32_t cp) {
          if (cp != replacement) out.append(tokens[i], offset, length);
          else if (!(i == 0 && scheme != "never")) out += ' ';  // HF drops every replacement of the first token
        });
        tokens[i] = std::move(out);
      }
    };
  }
  if (type == "Replace") {
    auto pattern = std::make_shared<Pattern>(node.at("pattern"));
    std::string content = node.at("content").string();
    return [pattern, content](std::vector<std::string>& tokens) {
      for (auto& token : tokens) token = replace_matches(token, *pattern, content);
    };
  }
  if (type == "ByteFallback") {
    return [](std::vector<std::string>& tokens) {
      std::vector<std::string> out;
      std::string pending;  // bytes of consecutive <0xNN> tokens
      auto flush = [&]() {
        if (pending.empty()) return;
        if (first_invalid_utf8(pending) == std::string_view::npos) out.push_back(pending);
        else
          for (size_t i = 0; i < pending.size(); i++) out.push_back("\xef\xbf\xbd");  // one U+FFFD per byte, as HF
        pending.clear();
      };
      for (auto& token : tokens) {
        bool is_byte = token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>' &&
                       std::isxdigit(static_cast<unsigned char>(token[3])) && std::isxdigit(static_cast<unsigned char>(token[4]));
        if (is_byte) {
          pending += static_cast<char>(std::strtoul(token.substr(3, 2).c_str(), nullptr, 16));
        } else {
          flush();
          out.push_back(std::move(token));
        }
      }
      flush();
      tokens = std::move(out);
    };
  }
  if (type == "Fuse") {
    return [](std::vector<std::string>& tokens) {
      std::string joined;
      for (const auto& token : tokens) joined += token;
      tokens = {joined};
    };
  }
  if (type == "Strip") {
    uint32_t content = node.at("content").character();
    size_t start = node.at("start").unsigned_integer(), stop = node.at("stop").unsigned_integer();
    return [content, start, stop](std::vector<std::string>& tokens) {
      for (auto& token : tokens) {
        // Up to `start` leading and `stop` trailing `content` characters go (HF's Strip decoder);
        // the two cuts never cross.
        size_t begin = 0, end = token.size();
        for (size_t i = 0; i < start && begin < end; i++) {
          size_t length;
          if (decode_utf8_at(token, begin, &length) != content) break;
          begin += length;
        }
        for (size_t i = 0; i < stop && end > begin; i++) {
          size_t last = end - 1;
          while (last > begin && (static_cast<unsigned char>(token[last]) & 0xc0) == 0x80) last--;
          size_t length;
          if (decode_utf8_at(token, last, &length) != content) break;
          end = last;
        }
        token = token.substr(begin, end - begin);
      }
    };
  }
  if (type == "BPEDecoder") {
    std::string suffix = node.has("suffix") ? node.at("suffix").string() : "</w>";
    return [suffix](std::vector<std::string>& tokens) {
      for (size_t i = 0; i < tokens.size(); i++) {
        std::string replacement = i + 1 == tokens.size() ? "" : " ";
        std::string& token = tokens[i];
        if (suffix.empty()) continue;
        for (size_t at = token.find(suffix); at != std::string::npos; at = token.find(suffix, at + replacement.size()))
          token.replace(at, suffix.size(), replacement);
      }
    };
  }
  node.fail("decoder type \"" + type + "\" is not supported",
            "supported decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence");
}

// ======================= the BPE model =======================

struct MergeResult {
  uint32_t rank;
  uint32_t new_id;
};

uint64_t pair_key(uint32_t left, uint32_t right) { return (static_cast<uint64_t>(left) << 32) | right; }

struct BpeModel {
  std::unordered_map<std::string, uint32_t> vocab;
  std::unordered_map<uint32_t, std::string> vocab_by_id;
  std::unordered_map<uint64_t, MergeResult> merges;  // (left id, right id) -> (rank, merged id)
  std::optional<uint32_t> unk_id;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  std::array<std::optional<uint32_t>, 256> byte_ids;  // <0xNN> tokens
  mutable std::atomic<bool> warned_dropped{false};
  // Words seen before, as HF's BPE cache: natural text repeats its words, so most pre-tokens are
  // found here. Filled until it holds kCacheCapacity words, then only read.
  static constexpr size_t kCacheCapacity = 10000, kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<uint32_t>> cache;

  void tokenize(const std::string& text, std::vector<uint32_t>& out) const {
    if (text.empty()) return;
    if (text.size() <= kCacheMaxWordBytes) {
      {
        std::lock_guard<std::mutex> lock(cache_mutex);
        auto found = cache.find(text);
        if (found != cache.end()) {
          out.insert(out.end(), found->second.begin(), found->second.end());
          return;
        }
      }
      size_t before = out.size();
      tokenize_uncached(text, out);
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache.size() < kCacheCapacity) cache.emplace(text, std::vector<uint32_t>(out.begin() + static_cast<long>(before), out.end()));
      return;
    }
    tokenize_uncached(text, out);
  }

  void tokenize_uncached(const std::string& text, std::vector<uint32_t>& out) const {
    if (ignore_merges) {  // Llama 3: a pre-token that is itself in the vocabulary is one token
      auto found = vocab.find(text);
      if (found != vocab.end()) {
        out.push_back(found->second);
        return;
      }
    }
    struct Symbol {
      uint32_t id;
      int32_t previous, next;
      uint32_t length;  // bytes of the text it covers; 0 once merged into its left neighbour
    };
    std::vector<Symbol> symbols;
    symbols.reserve(text.size());
    auto add = [&](uint32_t id, uint32_t length) {
      int32_t index = static_cast<int32_t>(symbols.size());
      if (!symbols.empty()) symbols.back().next = index;
      symbols.push_back({id, index - 1, -1, length});
    };

    // Initial symbols: one per character (HF's BPE::merge_word), with byte fallback and unk.
    bool has_pending_unk = false;  // an unk symbol not yet added (consecutive ones fuse when fuse_unk)
    uint32_t pending_unk_length = 0;
    size_t offset = 0;
    std::string lookup;
    while (offset < text.size()) {
      size_t length;
      decode_utf8_at(text, offset, &length);
      bool first = offset == 0, last = offset + length == text.size();
      lookup.assign(text, offset, length);
      if (!first && !continuing_subword_prefix.empty()) lookup = continuing_subword_prefix + lookup;
      if (last && !end_of_word_suffix.empty()) lookup += end_of_word_suffix;
      offset += length;
      auto found = vocab.find(lookup);
      if (found != vocab.end()) {
        if (has_pending_unk) add(*unk_id, pending_unk_length);
        has_pending_unk = false;
        add(found->second, static_cast<uint32_t>(length));
        continue;
      }
      if (byte_fallback) {
        bool all_bytes = true;
        for (unsigned char byte : lookup) all_bytes = all_bytes && byte_ids[byte].has_value();
        if (all_bytes) {
          for (unsigned char byte : lookup) add(*byte_ids[byte], 1);
          continue;  // as HF: a pending unk stays pending across byte-fallback tokens
        }
      }
      if (unk_id) {
        if (has_pending_unk && fuse_unk) {
          pending_unk_length += static_cast<uint32_t>(length);
        } else {
          if (has_pending_unk) add(*unk_id, pending_unk_length);
          has_pending_unk = true;
          pending_unk_length = static_cast<uint32_t>(length);
        }
      } else if (!warned_dropped.exchange(true)) {
        log::warn("tokenizer: a character the vocabulary cannot encode (no byte fallback, no unk token) was dropped, as "
                  "Hugging Face tokenizers does");
      }
    }
    if (has_pending_unk) add(*unk_id, pending_unk_length);

    // Merge the lowest-ranked adjacent pair first (leftmost on ties) until none applies
    // (HF's Word::merge_all without dropout).
    struct Candidate {
      uint32_t rank, position, new_id;
    };
    auto worse = [](const Candidate& a, const Candidate& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> queue(worse);
    for (size_t i = 0; i + 1 < symbols.size(); i++) {
      auto merge = merges.find(pair_key(symbols[i].id, symbols[i + 1].id));
      if (merge != merges.end()) queue.push({merge->second.rank, static_cast<uint32_t>(i), merge->second.new_id});
    }
    while (!queue.empty()) {
      Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.position];
      if (left.length == 0 || left.next == -1) continue;
      Symbol right = symbols[left.next];
      auto merge = merges.find(pair_key(left.id, right.id));
      if (merge == merges.end() || merge->second.new_id != top.new_id) continue;  // stale entry
      int32_t right_index = left.next;
      left.id = top.new_id;
      left.length += right.length;
      left.next = right.next;
      symbols[right_index].length = 0;
      if (right.next >= 0) symbols[right.next].previous = static_cast<int32_t>(top.position);
      if (left.previous >= 0) {
        auto with_previous = merges.find(pair_key(symbols[left.previous].id, left.id));
        if (with_previous != merges.end())
          queue.push({with_previous->second.rank, static_cast<uint32_t>(left.previous), with_previous->second.new_id});
      }
      if (left.next >= 0) {
        auto with_next = merges.find(pair_key(left.id, symbols[left.next].id));
        if (with_next != merges.end()) queue.push({with_next->second.rank, top.position, with_next->second.new_id});
      }
    }
    for (const Symbol& symbol : symbols)
      if (symbol.length != 0) out.push_back(symbol.id);
  }
};

std::unique_ptr<BpeModel> parse_model(const Node& node) {
  std::string type = node.type();
  if (type.empty() && !node.has("merges"))
    node.fail("has no \"type\" and no \"merges\": not a BPE model",
              "vktune reads BPE tokenizers (Llama, Mistral, Qwen2, GPT-2 style)");
  if (!type.empty() && type != "BPE")
    node.at("type").fail("model type \"" + type + "\" is not supported",
                         "vktune reads BPE tokenizers (Llama, Mistral, Qwen2, GPT-2 style); Unigram/WordPiece models "
                         "(T5, Gemma's sentencepiece unigram, BERT) are not supported");
  auto model = std::make_unique<BpeModel>();
  Node vocab = node.at("vocab");
  if (!vocab.value().is_object()) vocab.fail("must be an object mapping tokens to ids");
  model->vocab.reserve(vocab.value().size());
  for (auto& [token, id_value] : vocab.value().items()) {
    uint32_t id = Node(id_value, vocab.child_path(token), vocab.where()).id();
    model->vocab[token] = id;
    model->vocab_by_id.emplace(id, token);
  }
  if (auto unk = node.get("unk_token")) {
    std::string unk_token = unk->string();
    auto found = model->vocab.find(unk_token);
    if (found == model->vocab.end()) unk->fail("\"" + unk_token + "\" is not in model.vocab");
    model->unk_id = found->second;
  }
  model->fuse_unk = node.boolean_or("fuse_unk", false);
  model->byte_fallback = node.boolean_or("byte_fallback", false);
  model->ignore_merges = node.boolean_or("ignore_merges", false);
  if (auto prefix = node.get("continuing_subword_prefix")) model->continuing_subword_prefix = prefix->string();
  if (auto suffix = node.get("end_of_word_suffix")) model->end_of_word_suffix = suffix->string();
  if (auto dropout = node.get("dropout"); dropout && dropout->value().is_number() && dropout->value().get<double>() > 0)
    log::warn(node.where() + ": model.dropout is ignored (encoding is deterministic)");
  static const char* kHex = "0123456789ABCDEF";
  for (int byte = 0; byte < 256; byte++) {
    std::string name = std::string("<0x") + kHex[byte >> 4] + kHex[byte & 15] + ">";
    auto found = model->vocab.find(name);
    if (found != model->vocab.end()) model->byte_ids[byte] = found->second;
  }

  Node merges = node.at("merges");
  size_t count = merges.size();
  model->merges.reserve(count);
  const size_t prefix_length = model->continuing_subword_prefix.size();
  uint32_t rank = 0;
  for (size_t i = 0; i < count; i++) {
    Node merge = merges[i];
    std::string left, right;
    if (merge.value().is_string()) {  // legacy "a b"
      std::string line = merge.string();
      if (line.rfind("#version", 0) == 0) continue;  // a merges.txt header line, not a merge
      size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
        merge.fail("\"" + line + "\" must be two tokens separated by one space");
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (merge.value().is_array() && merge.value().size() == 2) {  // ["a", "b"]
      left = merge[0].string();
      right = merge[1].string();
    } else {
      merge.fail("must be \"a b\" or [\"a\", \"b\"], got " + merge.value().dump().substr(0, 80));
    }
    auto left_id = model->vocab.find(left);
    auto right_id = model->vocab.find(right);
    if (left_id == model->vocab.end()) merge.fail("token \"" + left + "\" is not in model.vocab");
    if (right_id == model->vocab.end()) merge.fail("token \"" + right + "\" is not in model.vocab");
    if (right.size() < prefix_length) merge.fail("token \"" + right + "\" is shorter than continuing_subword_prefix");
    std::string merged = left + right.substr(prefix_length);
    auto merged_id = model->vocab.find(merged);
    if (merged_id == model->vocab.end()) merge.fail("the merged token \"" + merged + "\" is not in model.vocab");
    model->merges[pair_key(left_id->second, right_id->second)] = {rank++, merged_id->second};  // a repeat wins, as in HF
  }
  return model;
}

// ======================= added tokens =======================

struct AddedToken {
  std::string content;
  std::string decoded;     // what decode() shows: the normalized content for normalized tokens
  uint32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = true;
};

// Leftmost-longest matching of a set of strings (what HF's Aho-Corasick automaton does), by
// walking a byte trie from each position.
class TokenMatcher {
 public:
  TokenMatcher() : nodes_(1) { root_children_.fill(0); }
  bool empty() const { return nodes_.size() == 1; }
  void add(const std::string& text, size_t token) {
    size_t node = 0;
    for (unsigned char byte : text) {
      size_t child = find_child(node, byte);
      if (child == 0) {
        child = nodes_.size();
        nodes_[node].children.emplace_back(byte, child);
        if (node == 0) root_children_[byte] = child;
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].token = static_cast<int64_t>(token);
  }
  // The longest string starting at `offset`: (token index, length), or token -1.
  std::pair<int64_t, size_t> longest_at(std::string_view text, size_t offset) const {
    int64_t best = -1;
    size_t best_length = 0, node = 0;
    for (size_t i = offset; i < text.size(); i++) {
      node = find_child(node, static_cast<unsigned char>(text[i]));
      if (node == 0) break;
      if (nodes_[node].token >= 0) best = nodes_[node].token, best_length = i + 1 - offset;
    }
    return {best, best_length};
  }

 private:
  struct TrieNode {
    std::vector<std::pair<unsigned char, size_t>> children;
    int64_t token = -1;
  };
  size_t find_child(size_t node, unsigned char byte) const {
    if (node == 0) return root_children_[byte];  // every position of the text starts here: one lookup
    for (const auto& [key, child] : nodes_[node].children)
      if (key == byte) return child;
    return 0;
  }
  std::vector<TrieNode> nodes_;
  std::array<size_t, 256> root_children_;
};

// ======================= post-processors =======================

// One post-processing step: the ids of the text -> the ids with special tokens around them.
using PostProcessor = std::function<std::vector<uint32_t>(std::vector<uint32_t>)>;

PostProcessor parse_post_processor(const Node& node) {
  std::string type = node.type();
  if (type == "Sequence") {
    Node list = node.at("processors");
    std::vector<PostProcessor> steps;
    for (size_t i = 0; i < list.size(); i++) steps.push_back(parse_post_processor(list[i]));
    return [steps](std::vector<uint32_t> ids) {
      for (const auto& step : steps) ids = step(std::move(ids));
      return ids;
    };
  }
  if (type == "ByteLevel") return [](std::vector<uint32_t> ids) { return ids; };  // only trims offsets
  if (type == "TemplateProcessing") {
    // "single": [{"SpecialToken": {"id": "<s>", ...}}, {"Sequence": {"id": "A", ...}}] (or the
    // string forms "<s>" / "$A"); "special_tokens": {"<s>": {"ids": [1], ...}}.
    Node single = node.at("single");
    Node specials = node.at("special_tokens");
    struct Item {
      bool is_sequence;
      std::vector<uint32_t> ids;
    };
    std::vector<Item> items;
    for (size_t i = 0; i < single.size(); i++) {
      Node piece = single[i];
      std::string name;
      bool is_sequence = false;
      if (piece.has("Sequence")) {
        is_sequence = true;
        name = piece.at("Sequence").at("id").string();
      } else if (piece.has("SpecialToken")) {
        name = piece.at("SpecialToken").at("id").string();
      } else if (piece.value().is_string()) {  // "$A", "$A:1", "<s>", "<s>:0"
        name = piece.string();
        size_t colon = name.rfind(':');
        if (colon != std::string::npos && colon > 0 && colon + 1 < name.size() &&
            std::all_of(name.begin() + static_cast<long>(colon) + 1, name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
          name.resize(colon);
        if (!name.empty() && name[0] == '$') {
          is_sequence = true;
          name = name.substr(1);
        }
      } else {
        piece.fail("must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      }
      if (is_sequence) {
        if (name != "A" && name != "a" && name != "" && name != "0")
          piece.fail("the single-sequence template may only use sequence A, got \"" + name + "\"");
        items.push_back({true, {}});
        continue;
      }
      if (!specials.has(name.c_str()))
        piece.fail("special token \"" + name + "\" is not defined in " + specials.path());
      Node special = specials.at(name.c_str());
      Node ids = special.at("ids");
      Item item{false, {}};
      for (size_t j = 0; j < ids.size(); j++) item.ids.push_back(ids[j].id());
      items.push_back(std::move(item));
    }
    return [items](std::vector<uint32_t> ids) {
      std::vector<uint32_t> out;
      out.reserve(ids.size() + items.size());
      for (const auto& item : items) {
        if (item.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
        else out.insert(out.end(), item.ids.begin(), item.ids.end());
      }
      return out;
    };
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    // {"cls": ["<s>", 0], "sep": ["</s>", 2]}: cls, text, sep.
    Node cls_node = node.at("cls"), sep_node = node.at("sep");
    if (cls_node.size() != 2 || sep_node.size() != 2) node.fail("\"cls\" and \"sep\" must be [token, id] pairs");
    uint32_t cls = cls_node[1].id(), sep = sep_node[1].id();
    return [cls, sep](std::vector<uint32_t> ids) {
      ids.insert(ids.begin(), cls);
      ids.push_back(sep);
      return ids;
    };
  }
  node.fail("post-processor type \"" + type + "\" is not supported",
            "supported post-processors: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence");
}

}  // namespace

// ======================= the tokenizer =======================

struct Tokenizer::Impl {
  std::string where;
  std::unique_ptr<BpeModel> model;
  Normalizer normalizer;          // empty when none
  std::vector<PreTokenizerStep> pre_tokenizer;  // none: the model sees each normalized piece whole
  PostProcessor post_processor;   // empty when none
  Decoder decoder;                // empty when none: tokens are joined with spaces
  std::vector<AddedToken> added;  // in file order
  std::unordered_map<std::string, size_t> added_by_content;
  std::unordered_map<uint32_t, size_t> added_by_id;
  TokenMatcher raw_matcher;         // added tokens with normalized = false: matched in the raw text
  TokenMatcher normalized_matcher;  // normalized = true: matched in the normalized text
  std::optional<uint32_t> bos, eos;
  std::vector<uint32_t> leading_ids;   // what the post-processor puts before the text
  std::vector<uint32_t> trailing_ids;  // and after it
  size_t id_count = 0;

  // HF's AddedVocabulary::find_matches + split: cuts the added tokens out of one piece.
  std::vector<Piece> split_added(Piece piece, const TokenMatcher& matcher) const {
    if (matcher.empty()) return {std::move(piece)};
    const std::string_view text = piece.text;
    std::vector<Piece> parts;
    size_t start_offset = 0, position = 0;
    auto add_text = [&](size_t begin, size_t end) {
      if (begin < end) parts.push_back({std::string(text.substr(begin, end - begin)), piece.at_start && begin == 0, std::nullopt});
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
          size_t before = start - 1;
          while (before > 0 && (static_cast<unsigned char>(text[before]) & 0xc0) == 0x80) before--;
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
          size_t before = new_start - 1;
          while (before > 0 && (static_cast<unsigned char>(text[before]) & 0xc0) == 0x80) before--;
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

  // Step k of the pre-tokenizer; the sink after the last step runs the model.
  struct StepSink final : PieceSink {
    const Impl* impl = nullptr;
    size_t step = 0;
    StepSink* next = nullptr;
    std::vector<uint32_t>* ids = nullptr;
    void take(Piece&& piece) override {
      if (piece.id) {
        ids->push_back(*piece.id);
      } else if (!piece.text.empty()) {
        if (step == impl->pre_tokenizer.size()) impl->model->tokenize(piece.text, *ids);
        else impl->pre_tokenizer[step](std::move(piece), *next);
      }
    }
  };

  std::vector<uint32_t> encode(std::string_view text, bool add_special_tokens) const {
    size_t invalid = first_invalid_utf8(text);
    if (invalid != std::string_view::npos)
      throw UserError("text to tokenize is not valid UTF-8 (at byte " + std::to_string(invalid) + ")",
                      "re-encode the data set as UTF-8");
    std::vector<uint32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<StepSink> sinks(pre_tokenizer.size() + 1);
    for (size_t step = 0; step < sinks.size(); step++) {
      sinks[step].impl = this;
      sinks[step].step = step;
      sinks[step].next = step + 1 < sinks.size() ? &sinks[step + 1] : nullptr;
      sinks[step].ids = &ids;
    }
    // 1. Added tokens that are not normalized are cut out of the raw text; 2. each other piece is
    // normalized and the normalized added tokens are cut out of it; 3. pre-tokenizer and model.
    for (auto& piece : split_added(Piece{std::string(text), true, std::nullopt}, raw_matcher)) {
      if (piece.id) {
        ids.push_back(*piece.id);
        continue;
      }
      if (normalizer) normalizer(piece.text);
      for (auto& part : split_added(std::move(piece), normalized_matcher)) sinks[0].take(std::move(part));
    }
    if (add_special_tokens && post_processor) ids = post_processor(std::move(ids));
    return ids;
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

// tokenizer_config.json names a token either as a string or as {"content": "...", ...}.
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& value = config[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string())
    return value["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

Tokenizer Tokenizer::from_json(const json& document, const std::string& where, const json& tokenizer_config) {
  auto impl = std::make_unique<Impl>();
  impl->where = where;
  Node root(document, "", impl->where);
  if (!document.is_object()) root.fail("tokenizer.json must be a JSON object");
  if (root.has("version") && root.at("version").string() != "1.0")
    root.at("version").fail("unknown tokenizer.json version \"" + root.at("version").string() + "\" (expected \"1.0\")");

  impl->model = parse_model(root.at("model"));
  if (auto node = root.get("normalizer")) impl->normalizer = parse_normalizer(*node);
  if (auto node = root.get("pre_tokenizer")) parse_pre_tokenizer(*node, impl->pre_tokenizer);
  if (auto node = root.get("post_processor")) impl->post_processor = parse_post_processor(*node);
  if (auto node = root.get("decoder")) impl->decoder = parse_decoder(*node);

  // Added tokens, with ids assigned as HF's AddedVocabulary::add_tokens does: a token already in
  // the vocabulary keeps that id; a new one gets the next id after the model's vocabulary.
  BpeModel& model = *impl->model;
  uint32_t max_model_id = 0;
  for (const auto& entry : model.vocab_by_id) max_model_id = std::max(max_model_id, entry.first);
  std::optional<uint32_t> max_added_id;
  if (auto list = root.get("added_tokens")) {
    for (size_t i = 0; i < list->size(); i++) {
      Node entry = (*list)[i];
      AddedToken token;
      token.content = entry.at("content").string();
      if (token.content.empty()) continue;  // HF ignores empty added tokens
      token.special = entry.boolean_or("special", false);
      token.lstrip = entry.boolean_or("lstrip", false);
      token.rstrip = entry.boolean_or("rstrip", false);
      token.single_word = entry.boolean_or("single_word", false);
      token.normalized = entry.boolean_or("normalized", !token.special);
      std::optional<uint32_t> existing;
      if (auto found = impl->added_by_content.find(token.content); found != impl->added_by_content.end())
        existing = impl->added[found->second].id;
      else if (auto in_vocab = model.vocab.find(token.content); in_vocab != model.vocab.end())
        existing = in_vocab->second;
      if (existing) {
        token.id = *existing;
      } else {
        const uint32_t model_size = static_cast<uint32_t>(model.vocab.size());
        token.id = !max_added_id ? model_size : (*max_added_id >= model_size || model_size == 0 ? *max_added_id + 1 : model_size);
      }
      if (entry.has("id") && entry.at("id").id() != token.id)
        log::warn(where + ": added_tokens[" + std::to_string(i) + "] \"" + token.content + "\" is listed with id " +
                  std::to_string(entry.at("id").id()) + " but gets id " + std::to_string(token.id) +
                  " (as Hugging Face tokenizers assigns it)");
      max_added_id = std::max(max_added_id.value_or(0), token.id);
      token.decoded = token.content;
      if (token.normalized && impl->normalizer) impl->normalizer(token.decoded);
      size_t index = impl->added.size();
      impl->added_by_content[token.content] = index;
      impl->added_by_id[token.id] = index;
      impl->added.push_back(std::move(token));
    }
  }
  for (size_t index = 0; index < impl->added.size(); index++) {
    const AddedToken& token = impl->added[index];
    if (impl->added_by_id[token.id] != index) continue;  // superseded by a later entry with the same id
    if (token.normalized) impl->normalized_matcher.add(token.decoded, index);
    else impl->raw_matcher.add(token.content, index);
  }
  impl->id_count = model.vocab_by_id.empty() ? 0 : max_model_id + 1;
  if (max_added_id) impl->id_count = std::max<size_t>(impl->id_count, *max_added_id + 1);

  Tokenizer tokenizer(std::move(impl));
  Impl& self = *tokenizer.impl_;
  auto lookup = [&](const std::string& name) { return tokenizer.token_to_id(name); };
  std::optional<uint32_t> configured_bos, configured_eos;
  if (auto name = config_token(tokenizer_config, "bos_token")) configured_bos = lookup(*name);
  if (auto name = config_token(tokenizer_config, "eos_token")) configured_eos = lookup(*name);

  // transformers' LlamaTokenizerFast (and CodeLlama's, Gemma's) rebuild the post-processor from
  // tokenizer_config.json's add_bos_token (default true) / add_eos_token (default false) when they
  // load, whatever tokenizer.json says: single = [bos] $A [eos].
  std::string tokenizer_class;
  if (tokenizer_config.is_object() && tokenizer_config.contains("tokenizer_class") && tokenizer_config["tokenizer_class"].is_string())
    tokenizer_class = tokenizer_config["tokenizer_class"].get<std::string>();
  for (const char* llama_like : {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast",
                                 "GemmaTokenizer", "GemmaTokenizerFast"}) {
    if (tokenizer_class != llama_like) continue;
    auto flag = [&](const char* key, bool fallback) {
      return tokenizer_config.contains(key) && tokenizer_config[key].is_boolean() ? tokenizer_config[key].get<bool>() : fallback;
    };
    bool add_bos = flag("add_bos_token", true), add_eos = flag("add_eos_token", false);
    if ((add_bos && !configured_bos) || (add_eos && !configured_eos))
      throw UserError(where + ": tokenizer_config.json asks for add_bos_token/add_eos_token but its bos_token/eos_token "
                      "is missing or not in the vocabulary",
                      "set bos_token and eos_token in tokenizer_config.json");
    std::vector<uint32_t> before, after;
    if (add_bos) before.push_back(*configured_bos);
    if (add_eos) after.push_back(*configured_eos);
    self.post_processor = [before, after](std::vector<uint32_t> ids) {
      ids.insert(ids.begin(), before.begin(), before.end());
      ids.insert(ids.end(), after.begin(), after.end());
      return ids;
    };
  }

  // What the post-processor puts before and after the text: run it on a marker sequence.
  if (self.post_processor) {
    const uint32_t marker = 0xffffffffu;
    std::vector<uint32_t> wrapped = self.post_processor({marker});
    auto at = std::find(wrapped.begin(), wrapped.end(), marker);
    self.leading_ids.assign(wrapped.begin(), at);
    if (at != wrapped.end()) self.trailing_ids.assign(at + 1, wrapped.end());
  }
  self.bos = configured_bos;
  if (!self.bos && !self.leading_ids.empty()) self.bos = self.leading_ids.front();
  for (const char* name : {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"})
    if (!self.bos) self.bos = lookup(name);
  self.eos = configured_eos;
  for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"})
    if (!self.eos) self.eos = lookup(name);
  return tokenizer;
}

Tokenizer Tokenizer::load(const fs::path& path) {
  fs::path file = fs::is_directory(path) ? path / "tokenizer.json" : path;
  if (!fs::exists(file))
    throw UserError("no tokenizer.json at " + file.string(),
                    "pass a Hugging Face model folder; models that ship only tokenizer.model (sentencepiece) need a "
                    "tokenizer.json, e.g. from AutoTokenizer.from_pretrained(...).save_pretrained(...)");
  json document, config = nullptr;
  try {
    document = json::parse(read_text_file(file));
  } catch (const json::exception& error) {
    throw UserError(file.string() + ": not valid JSON: " + error.what(), kTokenizerHint);
  }
  fs::path config_file = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config_file)) {
    try {
      config = json::parse(read_text_file(config_file));
    } catch (const json::exception& error) {
      throw UserError(config_file.string() + ": not valid JSON: " + error.what(), "download tokenizer_config.json again");
    }
  }
  return from_json(document, file.string(), config);
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return impl_->encode(text, add_special_tokens);
}

std::string Tokenizer::decode(std::span<const uint32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (uint32_t id : ids) {
    if (auto added = impl_->added_by_id.find(id); added != impl_->added_by_id.end()) {
      const AddedToken& token = impl_->added[added->second];
      if (!(skip_special_tokens && token.special)) tokens.push_back(token.decoded);
      continue;
    }
    auto found = impl_->model->vocab_by_id.find(id);
    if (found != impl_->model->vocab_by_id.end()) tokens.push_back(found->second);
  }
  if (!impl_->decoder) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); i++) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  impl_->decoder(tokens);
  std::string joined;
  for (const auto& token : tokens) joined += token;
  return joined;
}

std::optional<uint32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto added = impl_->added_by_content.find(std::string(token)); added != impl_->added_by_content.end())
    return impl_->added[added->second].id;
  if (auto found = impl_->model->vocab.find(std::string(token)); found != impl_->model->vocab.end()) return found->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(uint32_t id) const {
  if (auto added = impl_->added_by_id.find(id); added != impl_->added_by_id.end()) return impl_->added[added->second].content;
  if (auto found = impl_->model->vocab_by_id.find(id); found != impl_->model->vocab_by_id.end()) return found->second;
  return std::nullopt;
}

bool Tokenizer::is_special(uint32_t id) const {
  auto added = impl_->added_by_id.find(id);
  return added != impl_->added_by_id.end() && impl_->added[added->second].special;
}

std::optional<uint32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<uint32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::adds_bos() const {
  return impl_->bos && !impl_->leading_ids.empty() && impl_->leading_ids.front() == *impl_->bos;
}
bool Tokenizer::adds_eos() const {
  return impl_->eos && !impl_->trailing_ids.empty() && impl_->trailing_ids.back() == *impl_->eos;
}
size_t Tokenizer::vocab_size() const { return impl_->id_count; }

const std::string& byte_level_char(uint8_t byte) { return byte_level_map().byte_to_char[byte]; }

}  // namespace vkt::model
