#pragma once
// Rendering a parsed Jinja template: statements run in jinja2's scopes (a for loop's body gets a
// fresh scope each iteration; if blocks share their parent's), expressions evaluate to Values.
#include <string>
#include <vector>

#include "engine/text/jinja_parser.hpp"
#include "engine/text/jinja_value.hpp"

namespace vkt::text::jinja {

// Where each message's turn went in the output: the iterations of the top-level for loop over
// `messages` (or a slice of it, in order) that wrote the most text.
struct MessageSpan {
  size_t message;     // index in `messages`
  size_t begin, end;  // byte offsets of that iteration's output
};

// Renders `tmpl` with the top-level `variables` (a JSON object: messages, add_generation_prompt,
// bos_token, ...). UserError naming the template and line:column on an error, or the template's
// own message for raise_exception().
// When `trace` is given, it receives the message spans (empty when no loop iterates the messages).
std::string render(const Template& tmpl, const Json& variables, std::vector<MessageSpan>* trace = nullptr);

}  // namespace vkt::text::jinja
