#pragma once
// Jinja parsing: tokens become a tree of statements and expressions, with jinja2's operator
// precedence (filters and tests bind tighter than arithmetic; `~` between `+` and `*`).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/text/jinja_lexer.hpp"

namespace vkt::text::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    literal,      // value
    name,         // name
    list,         // items
    tuple,        // items
    dict,         // items: key, value, key, value, ...
    attribute,    // items[0].name
    subscript,    // items[0][items[1]]
    slice,        // items[0][items[1]:items[2]:items[3]] (null items are omitted bounds)
    call,         // items[0](items[1..], kwargs)
    filter,       // items[0] | name(items[1..], kwargs)
    test,         // items[0] is [not] name(items[1..])
    unary,        // name ("not", "-", "+") items[0]
    binary,       // items[0] name items[1]; name is the operator ("and", "or", "in", "not in", "==", "+", ...)
    conditional,  // items[0] if items[1] else items[2] (items[2] may be null)
  };
  Kind kind;
  SourcePos pos;
  std::string name;
  nlohmann::ordered_json value;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;  // `is not`
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind { text, output, if_chain, for_loop, set, set_block, macro, loop_break, loop_continue, generation };
  Kind kind;
  SourcePos pos;
  std::string text;                  // text: the literal output
  ExprPtr expr;                      // output, set's value, for's iterable
  std::vector<ExprPtr> conditions;   // if_chain: one per branch (else has none); for: the optional `if` filter
  std::vector<Body> bodies;          // if_chain: one per branch, + else; for: body, else; others: body
  std::vector<std::string> targets;  // for/set: names (`a, b`); set `ns.attr`: {"ns", "attr"} with attribute set
  bool attribute = false;            // set ns.attr = ...
  std::string name;                  // macro name
  std::vector<std::string> params;   // macro parameters
  std::vector<ExprPtr> defaults;     // macro defaults, aligned with params (null: none)
};

struct Template {
  std::string name;  // where the template comes from, for errors
  Body body;
};

// Throws UserError "<name>:<line>:<column>: ..." naming the unsupported or malformed construct.
std::shared_ptr<const Template> parse_template(const std::string& source, const std::string& name);

}  // namespace vkt::text::jinja
