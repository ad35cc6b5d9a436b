#pragma once
// The filters, tests, global functions and str/dict methods that chat templates call, with the
// results jinja2 and Python give (transformers' environment: tojson without HTML escaping,
// raise_exception, strftime_now, namespace).
#include <string>
#include <utility>
#include <vector>

#include "engine/text/jinja_value.hpp"

namespace vkt::text::jinja {

using Arguments = std::vector<Value>;
using KeywordArguments = std::vector<std::pair<std::string, Value>>;

// Argument `index` or keyword `name` of a Python-style signature, or `fallback` when not given.
Value argument(const Arguments& args, const KeywordArguments& kwargs, size_t index, const char* name,
               Value fallback = Value::of(nullptr));

// Globals other than macros: range, namespace, dict, raise_exception, strftime_now. False if unknown.
bool is_global_function(const std::string& name);
Value call_global(const std::string& name, const Arguments& args, const KeywordArguments& kwargs, const Where& where);
// `receiver.name` names a method of str or dict (which, as in Python, wins over a dict key).
bool is_method(const Json& receiver, const std::string& name);
Value call_method(const Json& receiver, const std::string& name, const Arguments& args, const KeywordArguments& kwargs,
                  const Where& where);
Value apply_filter(const std::string& name, const Value& value, const Arguments& args, const KeywordArguments& kwargs,
                   const Where& where);
bool apply_test(const std::string& name, const Value& value, const Arguments& args, const Where& where);

// Python's x[key] on data (negative list indexes count from the end); undefined when missing.
Value item_of(const Value& container, const Value& key, const Where& where);
// Python's x[start:stop:step] on a list or string (null bounds are omitted ones).
Value slice_of(const Value& value, const Value& start, const Value& stop, const Value& step, const Where& where);
// Items a for loop or filter iterates: list items, dict keys or string characters.
std::vector<Json> iterate(const Value& value, const Where& where);

}  // namespace vkt::text::jinja
