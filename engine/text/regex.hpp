#pragma once
// Regular expressions on PCRE2 with Unicode properties on (\p{L}, \p{N}), in place of HF
// tokenizers' Oniguruma; \s and \S are rewritten to Oniguruma's White_Space set (PCRE2's own also
// matches U+180E), after which the two agree on the patterns tokenizers use.
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vkt::text {

// GPT-2's pre-tokenizer pattern, built into HF's ByteLevel pre-tokenizer; the tokenizer trainer
// splits its words with it too.
extern const char* const kGpt2Pattern;

// A pattern PCRE2 does not compile; what() says at which offset and why.
class RegexSyntaxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Regex {
 public:
  explicit Regex(const std::string& pattern);  // RegexSyntaxError when it does not compile

  // Non-overlapping matches [begin, end), left to right, with the iteration rules of HF's
  // Oniguruma wrapper: an empty match right where the previous match ended is skipped (and the
  // search moves on by one character), so the loop always progresses. `text` must be valid UTF-8
  // (not checked again). UserError when matching fails (e.g. PCRE2's match limit).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Compiled;
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace vkt::text
