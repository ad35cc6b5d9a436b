#include "engine/text/jinja_lexer.hpp"

#include <algorithm>
#include <cstring>

#include "engine/base/error.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text::jinja {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// jinja2 reads templates with universal newlines and, by default, drops one trailing newline.
std::string normalize_newlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); i++) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') i++;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const std::string& name) : src_(std::move(source)), name_(name) {
    for (size_t i = 0; i < src_.size(); i++)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    while (pos < src_.size()) {
      size_t tag = find_tag(pos);
      std::string text = src_.substr(pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      strip_leading(text);
      if (tag == std::string::npos) {
        emit_text(text, pos);
        break;
      }
      char kind = src_[tag + 1];  // '{', '%' or '#'
      char marker = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (marker == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (kind != '{' && marker != '+') {
        lstrip_block(text);
      }
      emit_text(text, pos);
      size_t body = tag + 2 + (marker == '-' || marker == '+' ? 1 : 0);
      if (kind == '#')
        pos = end_comment(tag, body);
      else
        pos = lex_tag(tag, body, kind == '%');
    }
    tokens_.push_back({TokenKind::end, "", pos_of(src_.size())});
    return std::move(tokens_);
  }

 private:
  SourcePos pos_of(size_t offset) const {
    size_t line = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - line_starts_.begin();
    size_t start = line == 0 ? 0 : line_starts_[line - 1];
    return {static_cast<int>(line + 1), static_cast<int>(offset - start + 1)};
  }
  [[noreturn]] void fail(size_t offset, const std::string& what) const {
    SourcePos at = pos_of(offset);
    throw UserError(name_ + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " + what,
                    "the chat template is not valid Jinja: fix it in tokenizer_config.json");
  }

  size_t find_tag(size_t from) const {
    for (size_t at = src_.find('{', from); at != std::string::npos; at = src_.find('{', at + 1))
      if (at + 1 < src_.size() && std::strchr("{%#", src_[at + 1])) return at;
    return std::string::npos;
  }

  // The previous tag's `-` strips all following whitespace; trim_blocks drops one newline after a block or comment.
  void strip_leading(std::string& text) {
    if (strip_next_) {
      text.erase(0, std::find_if(text.begin(), text.end(), [](char c) { return !is_space(c); }) - text.begin());
    } else if (trim_next_newline_ && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
      line_starting_ = true;
    }
    strip_next_ = trim_next_newline_ = false;
  }

  // lstrip_blocks: spaces and tabs between the start of a line and a block or comment tag go.
  void lstrip_block(std::string& text) {
    size_t line_start = text.rfind('\n');
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    if (line_start == 0 && !line_starting_) return;
    if (std::all_of(text.begin() + line_start, text.end(), is_space)) text.resize(line_start);
  }

  void emit_text(const std::string& text, size_t offset) {
    if (!text.empty()) tokens_.push_back({TokenKind::text, text, pos_of(offset)});
    line_starting_ = false;
  }

  // After a tag's end: `-` strips the following whitespace, else trim_blocks (unless `+`) one newline.
  void after_tag_end(char marker, bool trims) {
    strip_next_ = marker == '-';
    trim_next_newline_ = trims && marker != '+';
  }

  size_t end_comment(size_t tag, size_t body) {
    size_t end = src_.find("#}", body);
    if (end == std::string::npos) fail(tag, "the comment {# is never closed with #}");
    after_tag_end(end > body && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : '\0', true);
    return end + 2;
  }

  size_t lex_tag(size_t tag, size_t body, bool block) {
    tokens_.push_back({block ? TokenKind::block_begin : TokenKind::output_begin, "", pos_of(tag)});
    const char closer = block ? '%' : '}';
    int depth = 0;
    size_t i = body;
    while (true) {
      while (i < src_.size() && is_space(src_[i])) i++;
      if (i >= src_.size()) fail(tag, std::string("the tag ") + (block ? "{%" : "{{") + " is never closed");
      char c = src_[i];
      if (depth == 0) {
        size_t end_at =
            c == closer ? i : ((c == '-' || c == '+') && i + 1 < src_.size() && src_[i + 1] == closer ? i + 1 : 0);
        if (end_at && end_at + 1 < src_.size() && src_[end_at + 1] == '}') {
          tokens_.push_back({block ? TokenKind::block_end : TokenKind::output_end, "", pos_of(i)});
          after_tag_end(end_at == i ? '\0' : c, block);
          return end_at + 2;
        }
      }
      size_t start = i;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (i < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) i++;
        tokens_.push_back({TokenKind::name, src_.substr(start, i - start), pos_of(start)});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        i = lex_number(i);
      } else if (c == '\'' || c == '"') {
        i = lex_string(i);
      } else {
        static const char* const ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "*", "/", "%", "~", "<",
                                          ">",  "=",  ".",  ",",  ":",  "|",  "(", ")", "[", "]", "{", "}"};
        const char* match = nullptr;
        for (const char* op : ops)
          if (src_.compare(i, std::strlen(op), op) == 0) {
            match = op;
            break;
          }
        if (!match) fail(i, std::string("unexpected character '") + c + "' in a tag");
        if (std::strchr("([{", c)) depth++;
        if (std::strchr(")]}", c)) depth--;
        tokens_.push_back({TokenKind::op, match, pos_of(i)});
        i += std::strlen(match);
      }
    }
  }

  size_t lex_number(size_t i) {
    size_t start = i;
    bool floating = false;
    auto digits = [&] {
      while (i < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[i])) || src_[i] == '_')) i++;
    };
    digits();
    if (i + 1 < src_.size() && src_[i] == '.' && std::isdigit(static_cast<unsigned char>(src_[i + 1]))) {
      floating = true;
      i++;
      digits();
    }
    if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
      size_t exponent = i + 1;
      if (exponent < src_.size() && (src_[exponent] == '+' || src_[exponent] == '-')) exponent++;
      if (exponent < src_.size() && std::isdigit(static_cast<unsigned char>(src_[exponent]))) {
        floating = true;
        i = exponent;
        digits();
      }
    }
    std::string spelling = src_.substr(start, i - start);
    spelling.erase(std::remove(spelling.begin(), spelling.end(), '_'), spelling.end());
    tokens_.push_back({floating ? TokenKind::floating : TokenKind::integer, spelling, pos_of(start)});
    return i;
  }

  // Python string literal escapes, as jinja2 decodes them.
  size_t lex_string(size_t i) {
    size_t start = i;
    char quote = src_[i++];
    std::string value;
    while (true) {
      if (i >= src_.size()) fail(start, "the string literal is never closed");
      char c = src_[i++];
      if (c == quote) break;
      if (c != '\\' || i >= src_.size()) {
        value += c;
        continue;
      }
      char e = src_[i++];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case '0':
          value += '\0';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'v':
          value += '\v';
          break;
        case '\\':
        case '\'':
        case '"':
          value += e;
          break;
        case '\n':
          break;  // a line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (i + width > src_.size()) fail(i - 2, "a truncated \\" + std::string(1, e) + " escape");
          append_utf8(value, static_cast<uint32_t>(std::stoul(src_.substr(i, width), nullptr, 16)));
          i += width;
          break;
        }
        default:
          value += '\\';
          value += e;  // Python keeps unknown escapes as written
      }
    }
    tokens_.push_back({TokenKind::string, value, pos_of(start)});
    return i;
  }

  std::string src_;
  const std::string& name_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  bool strip_next_ = false, trim_next_newline_ = false, line_starting_ = true;
};

}  // namespace

std::vector<Token> lex(const std::string& source, const std::string& template_name) {
  return Lexer(normalize_newlines(source), template_name).run();
}

}  // namespace vkt::text::jinja
