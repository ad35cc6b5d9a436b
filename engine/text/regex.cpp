#include "engine/text/regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <optional>

#include "engine/base/error.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Regex::Compiled {
  pcre2_code* code;
  explicit Compiled(pcre2_code* code) : code(code) {}
  ~Compiled() { pcre2_code_free(code); }
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;
};

namespace {

// Oniguruma's \s (what HF tokenizers' regexes mean): the Unicode White_Space characters. PCRE2's \s
// also matches U+180E MONGOLIAN VOWEL SEPARATOR (a space before Unicode 6.3, a format character
// since), which split DeepSeek-V3's pre-tokens differently.
constexpr const char* kWhiteSpace =
    R"(\t\n\x0b\f\r\x20\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";

// `pattern` with \s and \S spelled out as Oniguruma's classes: [set] outside a class, the bare set
// inside one. (\S inside a class has no bare spelling; PCRE2's is kept there: no tokenizer uses it.)
std::string with_oniguruma_whitespace(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); i++) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char next = pattern[++i];
      if (next == 's')
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      else if (next == 'S' && !in_class)
        out += "[^" + std::string(kWhiteSpace) + "]";
      else
        out += c, out += next;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == '[' && in_class && i + 1 < pattern.size() && pattern[i + 1] == ':') {  // [:alpha:] inside a class
      size_t end = pattern.find(":]", i + 2);
      if (end != std::string::npos) {
        out.append(pattern, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& written) {
  const std::string pattern = with_oniguruma_whitespace(written);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &error_code, &error_offset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    throw RegexSyntaxError("invalid regular expression at offset " + std::to_string(error_offset) + ": " +
                           reinterpret_cast<const char*>(message));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is used if it fails
  compiled_ = std::make_shared<const Compiled>(code);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  pcre2_code* code = compiled_->code;
  std::vector<std::pair<size_t, size_t>> matches;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code, nullptr);
  size_t search_from = 0;
  std::optional<size_t> last_match_end;
  while (search_from <= text.size()) {
    int result = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), search_from,
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

}  // namespace vkt::text
