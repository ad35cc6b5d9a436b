#include "engine/text/jinja_builtins.hpp"

#include <algorithm>
#include <ctime>
#include <set>

#include "engine/base/error.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text::jinja {

namespace {

std::string string_arg(const Value& value, const char* what, const Where& where) {
  if (!value.is_string()) fail_at(where, std::string(what) + " must be a string, got a " + type_name(value));
  return value.data().get_ref<const std::string&>();
}
int64_t int_arg(const Value& value, const char* what, const Where& where) {
  if (value.kind != Value::Kind::data || !value.data().is_number_integer())
    fail_at(where, std::string(what) + " must be an integer, got a " + type_name(value));
  return value.data().get<int64_t>();
}

// str.strip/lstrip/rstrip: whitespace, or any character of `chars`.
std::string strip(const std::string& text, const Value& chars, bool left, bool right, const Where& where) {
  std::vector<uint32_t> points = code_points(text);
  std::vector<uint32_t> set;
  bool whitespace = chars.kind != Value::Kind::data || chars.data().is_null();
  if (!whitespace) set = code_points(string_arg(chars, "strip()'s argument", where));
  auto strippable = [&](uint32_t cp) {
    return whitespace ? is_python_space(cp) : std::count(set.begin(), set.end(), cp) > 0;
  };
  size_t begin = 0, end = points.size();
  while (left && begin < end && strippable(points[begin])) begin++;
  while (right && end > begin && strippable(points[end - 1])) end--;
  return from_code_points(points, begin, end);
}

std::string ascii_case(std::string text, bool upper) {
  for (char& c : text)
    c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c))
                                : std::tolower(static_cast<unsigned char>(c)));
  return text;
}
std::string to_upper(const std::string& text) { return ascii_case(text, true); }  // non-ASCII letters stay as they are
std::string to_lower(const std::string& text) { return to_lowercase(text); }
std::string capitalize(const std::string& text) {
  std::vector<uint32_t> points = code_points(text);
  if (points.empty()) return text;
  return to_upper(from_code_points(points, 0, 1)) + to_lower(from_code_points(points, 1, points.size()));
}
std::string title(const std::string& text) {
  std::string out;
  bool word_start = true;
  for (char c : text) {
    bool letter = std::isalpha(static_cast<unsigned char>(c)) != 0;
    out += static_cast<char>(letter ? (word_start ? std::toupper(c) : std::tolower(c)) : c);
    word_start = !letter && !std::isdigit(static_cast<unsigned char>(c)) && c != '\'';
  }
  return out;
}

Json split(const std::string& text, const Value& separator, int64_t max_splits, const Where& where) {
  Json parts = Json::array();
  if (separator.kind != Value::Kind::data || separator.data().is_null()) {  // runs of whitespace, no empty parts
    std::vector<uint32_t> points = code_points(text);
    size_t i = 0;
    while (true) {
      while (i < points.size() && is_python_space(points[i])) i++;
      if (i == points.size()) break;
      if (max_splits >= 0 && static_cast<int64_t>(parts.size()) == max_splits) {
        size_t end = points.size();
        while (end > i && is_python_space(points[end - 1])) end--;
        parts.push_back(from_code_points(points, i, end));
        break;
      }
      size_t start = i;
      while (i < points.size() && !is_python_space(points[i])) i++;
      parts.push_back(from_code_points(points, start, i));
    }
    return parts;
  }
  const std::string& sep = string_arg(separator, "split()'s separator", where);
  if (sep.empty()) fail_at(where, "split(): empty separator");
  size_t start = 0;
  for (size_t at = text.find(sep); at != std::string::npos; at = text.find(sep, start)) {
    if (max_splits >= 0 && static_cast<int64_t>(parts.size()) == max_splits) break;
    parts.push_back(text.substr(start, at - start));
    start = at + sep.size();
  }
  parts.push_back(text.substr(start));
  return parts;
}

std::string replace(const std::string& text, const std::string& old, const std::string& replacement, int64_t count) {
  std::string out;
  size_t start = 0;
  for (int64_t done = 0; count < 0 || done < count; done++) {
    size_t at = old.empty() ? (start <= text.size() ? start : std::string::npos) : text.find(old, start);
    if (at == std::string::npos) break;
    out += text.substr(start, at - start) + replacement;
    if (old.empty()) {
      if (at == text.size()) return out;
      size_t length = utf8_sequence_length(static_cast<unsigned char>(text[at]));
      out += text.substr(at, length);
      start = at + length;
    } else {
      start = at + old.size();
    }
  }
  return out + text.substr(std::min(start, text.size()));
}

bool affix_matches(const std::string& text, const Value& affix, bool prefix, const Where& where) {
  if (affix.kind == Value::Kind::data && affix.data().is_array()) {
    for (const Json& each : affix.data())
      if (affix_matches(text, Value::of(each), prefix, where)) return true;
    return false;
  }
  const std::string& a = string_arg(affix, prefix ? "startswith()'s argument" : "endswith()'s argument", where);
  if (a.size() > text.size()) return false;
  return prefix ? text.compare(0, a.size(), a) == 0 : text.compare(text.size() - a.size(), a.size(), a) == 0;
}

const std::set<std::string>& string_methods() {
  static const std::set<std::string> names = {"strip",      "lstrip",  "rstrip", "split", "startswith",
                                              "endswith",   "replace", "upper",  "lower", "title",
                                              "capitalize", "find",    "count",  "join",  "isdigit"};
  return names;
}

}  // namespace

Value argument(const Arguments& args, const KeywordArguments& kwargs, size_t index, const char* name, Value fallback) {
  if (index < args.size()) return args[index];
  for (const auto& [key, value] : kwargs)
    if (key == name) return value;
  return fallback;
}

bool is_global_function(const std::string& name) {
  return name == "range" || name == "namespace" || name == "dict" || name == "raise_exception" ||
         name == "strftime_now";
}

Value call_global(const std::string& name, const Arguments& args, const KeywordArguments& kwargs, const Where& where) {
  if (name == "raise_exception") {
    std::string message = args.empty() ? "" : to_str(args[0]);
    throw UserError(*where.template_name + ":" + std::to_string(where.pos.line) + ":" +
                        std::to_string(where.pos.column) + ": the chat template rejects this conversation: " + message,
                    "the conversation does not fit this model's chat template; change the messages (e.g. their roles)");
  }
  if (name == "namespace" || name == "dict") {
    Json attributes = Json::object();
    for (const Value& positional : args) {
      if (positional.kind != Value::Kind::data || !positional.data().is_object())
        fail_at(where, name + "() takes a dict or keyword arguments");
      for (auto it = positional.data().begin(); it != positional.data().end(); ++it) attributes[it.key()] = it.value();
    }
    for (const auto& [key, value] : kwargs)
      attributes[key] = value.kind == Value::Kind::data ? value.data() : Json(nullptr);
    if (name == "dict") return Value::of(std::move(attributes));
    Value ns;
    ns.kind = Value::Kind::ns;
    ns.ns = std::make_shared<Namespace>(Namespace{std::move(attributes)});
    return ns;
  }
  if (name == "range") {
    if (args.empty() || args.size() > 3) fail_at(where, "range() takes 1 to 3 integers");
    int64_t start = args.size() > 1 ? int_arg(args[0], "range()'s start", where) : 0;
    int64_t stop = int_arg(args[args.size() > 1 ? 1 : 0], "range()'s stop", where);
    int64_t step = args.size() > 2 ? int_arg(args[2], "range()'s step", where) : 1;
    if (step == 0) fail_at(where, "range() step must not be zero");
    Json list = Json::array();
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) list.push_back(i);
    return Value::of(std::move(list));
  }
  if (name == "strftime_now") {
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[256];
    size_t length = std::strftime(
        buffer, sizeof buffer,
        string_arg(argument(args, kwargs, 0, "format"), "strftime_now()'s format", where).c_str(), &local);
    return Value::of(std::string(buffer, length));
  }
  fail_at(where, "the function '" + name + "' is not supported");
}

bool is_method(const Json& receiver, const std::string& name) {
  if (receiver.is_string()) return string_methods().count(name) > 0;
  if (receiver.is_object()) return name == "items" || name == "keys" || name == "values" || name == "get";
  return false;
}

Value call_method(const Json& receiver, const std::string& name, const Arguments& args, const KeywordArguments& kwargs,
                  const Where& where) {
  if (receiver.is_object()) {
    if (name == "get") {
      const std::string& key = string_arg(argument(args, kwargs, 0, "key"), "get()'s key", where);
      return receiver.contains(key) ? Value::of(receiver[key]) : argument(args, kwargs, 1, "default");
    }
    Json list = Json::array();
    for (auto it = receiver.begin(); it != receiver.end(); ++it) {
      if (name == "items")
        list.push_back(Json::array({it.key(), it.value()}));
      else
        list.push_back(name == "keys" ? Json(it.key()) : it.value());
    }
    return Value::of(std::move(list));
  }
  const std::string& text = receiver.get_ref<const std::string&>();
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return Value::of(strip(text, argument(args, kwargs, 0, "chars"), name != "rstrip", name != "lstrip", where));
  if (name == "split") {
    Value max_splits = argument(args, kwargs, 1, "maxsplit", Value::of(-1));
    return Value::of(
        split(text, argument(args, kwargs, 0, "sep"), int_arg(max_splits, "split()'s maxsplit", where), where));
  }
  if (name == "startswith" || name == "endswith")
    return Value::of(affix_matches(text, argument(args, kwargs, 0, "prefix"), name == "startswith", where));
  if (name == "replace") {
    Value count = argument(args, kwargs, 2, "count", Value::of(-1));
    return Value::of(replace(text, string_arg(argument(args, kwargs, 0, "old"), "replace()'s old", where),
                             string_arg(argument(args, kwargs, 1, "new"), "replace()'s new", where),
                             int_arg(count, "replace()'s count", where)));
  }
  if (name == "upper") return Value::of(to_upper(text));
  if (name == "lower") return Value::of(to_lower(text));
  if (name == "title") return Value::of(title(text));
  if (name == "capitalize") return Value::of(capitalize(text));
  if (name == "isdigit") return Value::of(!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit));
  if (name == "find" || name == "count") {
    const std::string& needle = string_arg(argument(args, kwargs, 0, "sub"), (name + "()'s argument").c_str(), where);
    if (name == "find") {
      size_t at = text.find(needle);
      return Value::of(at == std::string::npos ? int64_t(-1)
                                               : static_cast<int64_t>(code_points(text.substr(0, at)).size()));
    }
    if (needle.empty()) return Value::of(static_cast<int64_t>(code_points(text).size() + 1));
    int64_t count = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) count++;
    return Value::of(count);
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const Json& item : iterate(argument(args, kwargs, 0, "iterable"), where)) {
      if (!item.is_string()) fail_at(where, "str.join() needs strings, got " + repr(item));
      out += (first ? "" : text) + item.get<std::string>();
      first = false;
    }
    return Value::of(out);
  }
  fail_at(where, "the method str." + name + "() is not supported");
}

Value item_of(const Value& container, const Value& key, const Where& where) {
  if (container.kind == Value::Kind::undefined) fail_at(where, "cannot index: " + container.name);
  if (container.kind != Value::Kind::data)
    fail_at(where, std::string("a ") + type_name(container) + " cannot be indexed");
  const Json& data = container.data();
  if (key.kind == Value::Kind::data && key.data().is_number_integer() && (data.is_array() || data.is_string())) {
    int64_t index = key.data().get<int64_t>();
    std::vector<uint32_t> points;
    if (data.is_string()) points = code_points(data.get<std::string>());
    int64_t size = data.is_array() ? static_cast<int64_t>(data.size()) : static_cast<int64_t>(points.size());
    if (index < 0) index += size;
    if (index < 0 || index >= size)
      return Value::undefined("index " + std::to_string(key.data().get<int64_t>()) + " is out of range");
    if (data.is_array()) return Value::of(data[static_cast<size_t>(index)]);
    return Value::of(from_code_points(points, static_cast<size_t>(index), static_cast<size_t>(index) + 1));
  }
  if (key.is_string() && data.is_object()) {
    auto found = data.find(key.data().get<std::string>());
    if (found != data.end()) return Value::of(*found);
  }
  return Value::undefined(std::string("'") + type_name(container) + " object' has no item " + repr(key.data()));
}

Value slice_of(const Value& value, const Value& start, const Value& stop, const Value& step, const Where& where) {
  if (value.kind != Value::Kind::data || !(value.data().is_array() || value.data().is_string()))
    fail_at(where, std::string("cannot slice a ") + type_name(value));
  std::vector<uint32_t> points;
  if (value.data().is_string()) points = code_points(value.data().get<std::string>());
  int64_t size =
      value.data().is_array() ? static_cast<int64_t>(value.data().size()) : static_cast<int64_t>(points.size());
  int64_t stride = step.is_none() ? 1 : int_arg(step, "the slice step", where);
  if (stride == 0) fail_at(where, "slice step cannot be zero");
  // CPython's PySlice_AdjustIndices.
  auto bound = [&](const Value& v, int64_t omitted) {
    if (v.is_none()) return omitted;
    int64_t i = int_arg(v, "a slice bound", where);
    if (i < 0)
      i = std::max(i + size, stride < 0 ? int64_t(-1) : int64_t(0));
    else
      i = std::min(i, stride < 0 ? size - 1 : size);
    return i;
  };
  int64_t begin = bound(start, stride < 0 ? size - 1 : 0), end = bound(stop, stride < 0 ? -1 : size);
  Json list = Json::array();
  std::string text;
  for (int64_t i = begin; stride > 0 ? i < end : i > end; i += stride) {
    if (value.data().is_array())
      list.push_back(value.data()[static_cast<size_t>(i)]);
    else
      append_utf8(text, points[static_cast<size_t>(i)]);
  }
  return value.data().is_array() ? Value::of(std::move(list)) : Value::of(text);
}

std::vector<Json> iterate(const Value& value, const Where& where) {
  std::vector<Json> items;
  if (value.kind == Value::Kind::undefined) return items;  // jinja2's Undefined iterates as empty
  if (value.kind != Value::Kind::data) fail_at(where, std::string("a ") + type_name(value) + " is not iterable");
  const Json& data = value.data();
  if (data.is_array()) {
    items.assign(data.begin(), data.end());
  } else if (data.is_object()) {
    for (auto it = data.begin(); it != data.end(); ++it) items.push_back(it.key());
  } else if (data.is_string()) {
    for_each_char(data.get_ref<const std::string&>(), [&](size_t offset, size_t length, uint32_t) {
      items.push_back(data.get_ref<const std::string&>().substr(offset, length));
    });
  } else {
    fail_at(where, std::string("a ") + type_name(value) + " is not iterable");
  }
  return items;
}

}  // namespace vkt::text::jinja
