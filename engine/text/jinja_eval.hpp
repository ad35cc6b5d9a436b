#pragma once
// Rendering a parsed Jinja template: statements run in jinja2's scopes (a for loop's body gets a
// fresh scope each iteration; if blocks share their parent's), expressions evaluate to Values.
#include <string>
#include <utility>
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
struct RenderTrace {
  std::vector<MessageSpan> turns;                     // empty when no loop iterates the messages
  std::vector<std::pair<size_t, size_t>> generation;  // output of each {% generation %} block: [begin, end)
};

// Renders `tmpl` with the top-level `variables` (a JSON object: messages, add_generation_prompt,
// bos_token, ...). UserError naming the template and line:column on an error, or the template's
// own message for raise_exception().
// When `trace` is given, it receives where messages and generation blocks went in the output.
std::string render(const Template& tmpl, const Json& variables, RenderTrace* trace = nullptr);

}  // namespace vkt::text::jinja
