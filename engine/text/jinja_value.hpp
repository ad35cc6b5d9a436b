#pragma once
// Jinja values: JSON data (on nlohmann::ordered_json, so that dicts keep their key order as Python's
// do), undefined, namespace() objects and callables, with Python's meanings for str(), repr(),
// truth, equality, ordering and json.dumps().
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/text/jinja_lexer.hpp"

namespace vkt::text::jinja {

using Json = nlohmann::ordered_json;
struct Node;

// A namespace() object: the one mutable value templates have (`{% set ns.x = ... %}`).
struct Namespace {
  Json attributes = Json::object();
};

struct Value {
  enum class Kind { undefined, data, ns, callable };
  Kind kind = Kind::undefined;
  std::shared_ptr<const Json> json;  // data; shared, as templates never change data (copies are cheap)
  std::shared_ptr<Namespace> ns;     // ns
  std::string name;                  // callable: builtin or method name; undefined: what was missing
  Json self;                         // callable: a method's receiver (string, dict or list)
  bool is_method = false;            // callable: `self.name(...)`
  const Node* macro = nullptr;       // callable: a {% macro %}

  static Value of(Json json) {
    Value value;
    value.kind = Kind::data;
    value.json = std::make_shared<const Json>(std::move(json));
    return value;
  }
  static Value undefined(std::string what) {
    Value value;
    value.name = std::move(what);
    return value;
  }
  static Value builtin(std::string function) {
    Value value;
    value.kind = Kind::callable;
    value.name = std::move(function);
    return value;
  }
  static Value method(Json receiver, std::string function) {
    Value value = builtin(std::move(function));
    value.self = std::move(receiver);
    value.is_method = true;
    return value;
  }
  const Json& data() const {
    static const Json none;
    return json ? *json : none;
  }
  bool defined() const { return kind != Kind::undefined; }
  bool is_string() const { return kind == Kind::data && data().is_string(); }
  bool is_none() const { return kind == Kind::data && data().is_null(); }
};

// Where an expression is, to name it in errors: "<template>:<line>:<column>: <what>".
struct Where {
  const std::string* template_name;
  SourcePos pos;
};
[[noreturn]] void fail_at(const Where& where, const std::string& what);

const char* type_name(const Value& value);  // Python's names: str, int, float, bool, NoneType, list, dict, ...
bool truthy(const Value& value);
bool equal(const Value& a, const Value& b);
// Python's ordering of numbers, strings and lists; TypeError-like UserError otherwise.
bool less(const Value& a, const Value& b, const Where& where);
std::string to_str(const Value& value);  // str(): what {{ }} prints
std::string repr(const Json& value);     // repr(): how lists and dicts print their items
std::string python_float(double value);  // float.__repr__
// json.dumps(value, ensure_ascii, indent (< 0: none), separators, sort_keys) with Python's defaults.
std::string to_json(const Json& value, bool ensure_ascii, int indent, const std::string& item_separator,
                    const std::string& key_separator, bool sort_keys);

// Unicode code points of UTF-8 text (Python's str indexing unit).
std::vector<uint32_t> code_points(const std::string& text);
std::string from_code_points(const std::vector<uint32_t>& points, size_t begin, size_t end);
bool is_python_space(uint32_t cp);  // str.isspace()

}  // namespace vkt::text::jinja
