#pragma once
// Jinja lexing: a chat template's source becomes text pieces and the tokens inside {{ }} and {% %},
// with whitespace control applied the way transformers' jinja2 environment does it
// (trim_blocks=True, lstrip_blocks=True, `-` and `+` markers, one trailing newline dropped).
#include <string>
#include <vector>

namespace vkt::text::jinja {

struct SourcePos {
  int line = 1, column = 1;
};

enum class TokenKind {
  text,
  block_begin,
  block_end,
  output_begin,
  output_end,
  name,
  string,
  integer,
  floating,
  op,
  end
};

struct Token {
  TokenKind kind;
  std::string text;  // text piece, name, decoded string literal, number spelling or operator
  SourcePos pos;
};

// Throws UserError "<template_name>:<line>:<column>: ..." on an unterminated tag, comment or string.
std::vector<Token> lex(const std::string& source, const std::string& template_name);

}  // namespace vkt::text::jinja
