// Jinja's filters and tests (apply_filter, apply_test of jinja_builtins.hpp), as jinja2 3.1 defines
// them, with transformers' tojson (json.dumps, no HTML escaping, ensure_ascii=False).
#include <algorithm>
#include <cmath>

#include "engine/text/jinja_builtins.hpp"

namespace vkt::text::jinja {

namespace {

int64_t length_of(const Value& value, const Where& where) {
  if (value.kind == Value::Kind::undefined) return 0;
  if (value.kind == Value::Kind::data && value.data().is_string())
    return static_cast<int64_t>(code_points(value.data().get<std::string>()).size());
  if (value.kind == Value::Kind::data && (value.data().is_array() || value.data().is_object()))
    return static_cast<int64_t>(value.data().size());
  fail_at(where, std::string("a ") + type_name(value) + " has no length");
}

Value attribute_path(const Json& item, const std::string& path, const Where& where) {
  Value current = Value::of(item);
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    if (current.kind != Value::Kind::data || !(current.data().is_object() || current.data().is_array()))
      return Value::undefined("no attribute '" + part + "'");
    current = item_of(current, numeric ? Value::of(std::stoll(part)) : Value::of(part), where);
    if (!current.defined() || dot == std::string::npos) return current;
    start = dot + 1;
  }
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// select/reject/selectattr/rejectattr: keep the items whose (attribute's) test result is `keep`.
Value select(const Value& value, const Arguments& args, bool by_attribute, bool keep, const Where& where) {
  Json kept = Json::array();
  size_t test_at = by_attribute ? 1 : 0;
  if (by_attribute && (args.empty() || !args[0].is_string()))
    fail_at(where, "selectattr/rejectattr need an attribute name");
  std::string test = args.size() > test_at ? to_str(args[test_at]) : "";
  Arguments test_args(args.begin() + std::min(args.size(), test_at + 1), args.end());
  for (const Json& item : iterate(value, where)) {
    Value subject = by_attribute ? attribute_path(item, args[0].data().get<std::string>(), where) : Value::of(item);
    bool passed = test.empty() ? truthy(subject) : apply_test(test, subject, test_args, where);
    if (passed == keep) kept.push_back(item);
  }
  return Value::of(std::move(kept));
}

std::string indent(const std::string& text, const Value& width, bool first, bool blank) {
  std::string prefix =
      width.is_string() ? width.data().get<std::string>() : std::string(width.data().get<size_t>(), ' ');
  std::string out;
  size_t start = 0;
  bool first_line = true;
  while (true) {
    size_t end = text.find('\n', start);
    std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    bool indent_it = first_line ? first : (blank || !line.empty());
    out += (indent_it ? prefix : "") + line;
    if (end == std::string::npos) break;
    out += '\n';
    start = end + 1;
    first_line = false;
  }
  return out;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& value, const Arguments& args, const KeywordArguments& kwargs,
                   const Where& where) {
  auto text = [&] { return to_str(value); };
  if (name == "length" || name == "count") return Value::of(length_of(value, where));
  if (name == "trim") return call_method(Json(text()), "strip", {argument(args, kwargs, 0, "chars")}, {}, where);
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title")
    return call_method(Json(text()), name, {}, {}, where);
  if (name == "string") return Value::of(text());
  if (name == "safe") return value;
  if (name == "e" || name == "escape") return Value::of(html_escape(text()));
  if (name == "replace") return call_method(Json(text()), "replace", args, kwargs, where);
  if (name == "default" || name == "d") {
    bool use_default =
        truthy(argument(args, kwargs, 1, "boolean", Value::of(false))) ? !truthy(value) : !value.defined();
    return use_default ? argument(args, kwargs, 0, "default_value", Value::of("")) : value;
  }
  if (name ==
      "tojson") {  // transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    bool ensure_ascii = truthy(argument(args, kwargs, 0, "ensure_ascii", Value::of(false)));
    Value indent_by = argument(args, kwargs, 1, "indent");
    int indent_width = indent_by.is_none() ? -1 : indent_by.data().get<int>();
    std::string item_sep = indent_width < 0 ? ", " : ",", key_sep = ": ";
    Value separators = argument(args, kwargs, 2, "separators");
    if (!separators.is_none() && separators.defined()) {
      if (!separators.data().is_array() || separators.data().size() != 2)
        fail_at(where, "tojson separators must be a pair");
      item_sep = separators.data()[0].get<std::string>();
      key_sep = separators.data()[1].get<std::string>();
    }
    bool sort_keys = truthy(argument(args, kwargs, 3, "sort_keys", Value::of(false)));
    if (value.kind != Value::Kind::data) fail_at(where, std::string("tojson cannot write a ") + type_name(value));
    return Value::of(to_json(value.data(), ensure_ascii, indent_width, item_sep, key_sep, sort_keys));
  }
  if (name == "first" || name == "last") {
    std::vector<Json> items = iterate(value, where);
    if (items.empty()) return Value::undefined("the sequence is empty");
    return Value::of(name == "first" ? items.front() : items.back());
  }
  if (name == "list") return Value::of(Json(iterate(value, where)));
  if (name == "items") {
    if (!value.defined()) return Value::of(Json::array());
    if (value.kind != Value::Kind::data || !value.data().is_object()) fail_at(where, "items needs a dict");
    return call_method(value.data(), "items", {}, {}, where);
  }
  if (name == "join") {
    std::string separator = to_str(argument(args, kwargs, 0, "d", Value::of(""))), out;
    Value attribute = argument(args, kwargs, 1, "attribute");
    bool first = true;
    for (const Json& item : iterate(value, where)) {
      out += (first ? "" : separator) + to_str(attribute.is_string()
                                                   ? attribute_path(item, attribute.data().get<std::string>(), where)
                                                   : Value::of(item));
      first = false;
    }
    return Value::of(out);
  }
  if (name == "reverse") {
    if (value.is_string()) {
      std::vector<uint32_t> points = code_points(value.data().get<std::string>());
      std::reverse(points.begin(), points.end());
      return Value::of(from_code_points(points, 0, points.size()));
    }
    std::vector<Json> items = iterate(value, where);
    std::reverse(items.begin(), items.end());
    return Value::of(Json(items));
  }
  if (name == "unique") {
    Json unique = Json::array();
    for (const Json& item : iterate(value, where)) {
      bool seen = std::any_of(unique.begin(), unique.end(),
                              [&](const Json& u) { return equal(Value::of(u), Value::of(item)); });
      if (!seen) unique.push_back(item);
    }
    return Value::of(std::move(unique));
  }
  if (name == "sort") {
    std::vector<Json> items = iterate(value, where);
    bool reverse = truthy(argument(args, kwargs, 0, "reverse", Value::of(false)));
    Value attribute = argument(args, kwargs, 2, "attribute");
    auto key = [&](const Json& item) {
      return attribute.is_string() ? attribute_path(item, attribute.data().get<std::string>(), where) : Value::of(item);
    };
    std::stable_sort(items.begin(), items.end(), [&](const Json& a, const Json& b) {
      return reverse ? less(key(b), key(a), where) : less(key(a), key(b), where);
    });
    return Value::of(Json(items));
  }
  if (name == "map") {
    Json mapped = Json::array();
    Value attribute = argument({}, kwargs, 0, "attribute");
    for (const Json& item : iterate(value, where)) {
      if (attribute.is_string()) {
        Value found = attribute_path(item, attribute.data().get<std::string>(), where);
        if (!found.defined()) found = argument({}, kwargs, 0, "default");
        mapped.push_back(found.kind == Value::Kind::data ? found.data() : Json(nullptr));
      } else {
        if (args.empty() || !args[0].is_string()) fail_at(where, "map needs a filter name or attribute=");
        Value result = apply_filter(args[0].data().get<std::string>(), Value::of(item),
                                    Arguments(args.begin() + 1, args.end()), {}, where);
        mapped.push_back(result.kind == Value::Kind::data ? result.data() : Json(nullptr));
      }
    }
    return Value::of(std::move(mapped));
  }
  if (name == "select" || name == "reject") return select(value, args, false, name == "select", where);
  if (name == "selectattr" || name == "rejectattr") return select(value, args, true, name == "selectattr", where);
  if (name == "int" || name == "float") {
    Value fallback = argument(args, kwargs, 0, "default", name == "int" ? Value::of(0) : Value::of(0.0));
    if (value.kind != Value::Kind::data) return fallback;
    const Json& d = value.data();
    try {
      if (d.is_string())
        return name == "int" ? Value::of(static_cast<int64_t>(std::stod(d.get<std::string>())))
                             : Value::of(std::stod(d.get<std::string>()));
    } catch (const std::exception&) {
      return fallback;
    }
    if (!d.is_number() && !d.is_boolean()) return fallback;
    double number = d.is_boolean() ? (d.get<bool>() ? 1.0 : 0.0) : d.get<double>();
    return name == "int" ? Value::of(static_cast<int64_t>(number)) : Value::of(number);
  }
  if (name == "abs") {
    if (value.kind != Value::Kind::data || !value.data().is_number()) fail_at(where, "abs needs a number");
    return value.data().is_number_float() ? Value::of(std::fabs(value.data().get<double>()))
                                          : Value::of(std::llabs(value.data().get<int64_t>()));
  }
  if (name == "indent") {
    Value width = argument(args, kwargs, 0, "width", Value::of(4));
    return Value::of(indent(text(), width, truthy(argument(args, kwargs, 1, "first", Value::of(false))),
                            truthy(argument(args, kwargs, 2, "blank", Value::of(false)))));
  }
  fail_at(where, "the filter '" + name + "' is not supported");
}

bool apply_test(const std::string& name, const Value& value, const Arguments& args, const Where& where) {
  const Json& d = value.data();
  bool data = value.kind == Value::Kind::data;
  auto other = [&]() -> const Value& {
    if (args.empty()) fail_at(where, "the test '" + name + "' needs an argument");
    return args[0];
  };
  if (name == "defined") return value.defined();
  if (name == "undefined") return !value.defined();
  if (name == "none") return data && d.is_null();
  if (name == "boolean") return data && d.is_boolean();
  if (name == "true") return data && d.is_boolean() && d.get<bool>();
  if (name == "false") return data && d.is_boolean() && !d.get<bool>();
  if (name == "integer") return data && d.is_number_integer();
  if (name == "float") return data && d.is_number_float();
  if (name == "number") return data && (d.is_number() || d.is_boolean());
  if (name == "string") return data && d.is_string();
  if (name == "mapping") return (data && d.is_object()) || value.kind == Value::Kind::ns;
  if (name == "iterable")
    return value.kind == Value::Kind::undefined || (data && (d.is_array() || d.is_object() || d.is_string()));
  if (name == "sequence") return data && (d.is_array() || d.is_object() || d.is_string());
  if (name == "callable") return value.kind == Value::Kind::callable;
  if (name == "lower" || name == "upper") {
    if (!value.is_string()) return false;
    std::string text = d.get<std::string>();
    return text == to_str(call_method(d, name, {}, {}, where));
  }
  if (name == "even" || name == "odd" || name == "divisibleby") {
    if (!data || !d.is_number_integer()) fail_at(where, "the test '" + name + "' needs an integer");
    int64_t n = d.get<int64_t>();
    if (name == "divisibleby") {
      const Value& divisor = other();
      if (!divisor.data().is_number_integer() || divisor.data().get<int64_t>() == 0)
        fail_at(where, "divisibleby needs a non-zero integer");
      return n % divisor.data().get<int64_t>() == 0;
    }
    return (n % 2 == 0) == (name == "even");
  }
  if (name == "sameas") return equal(value, other()) && (!data || d.type() == other().data().type());
  if (name == "eq" || name == "equalto" || name == "==") return equal(value, other());
  if (name == "ne" || name == "!=") return !equal(value, other());
  if (name == "lt" || name == "<" || name == "lessthan") return less(value, other(), where);
  if (name == "gt" || name == ">" || name == "greaterthan") return less(other(), value, where);
  if (name == "le" || name == "<=") return !less(other(), value, where);
  if (name == "ge" || name == ">=") return !less(value, other(), where);
  if (name == "in") {
    const Value& container = other();
    if (container.is_string()) {
      if (!value.is_string())
        fail_at(where, std::string("'in <string>' needs a string on the left, got a ") + type_name(value));
      return container.data().get<std::string>().find(d.get<std::string>()) != std::string::npos;
    }
    if (container.kind == Value::Kind::data && container.data().is_object())
      return value.is_string() && container.data().contains(d.get<std::string>());
    for (const Json& item : iterate(container, where))
      if (equal(Value::of(item), value)) return true;
    return false;
  }
  fail_at(where, "the test '" + name + "' is not supported");
}

}  // namespace vkt::text::jinja
