#include "engine/text/jinja_value.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "engine/base/error.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text::jinja {

void fail_at(const Where& where, const std::string& what) {
  throw UserError(*where.template_name + ":" + std::to_string(where.pos.line) + ":" + std::to_string(where.pos.column) +
                      ": " + what,
                  "the chat template cannot render this conversation; check the messages (roles, content types) "
                  "or the template in tokenizer_config.json");
}

const char* type_name(const Value& value) {
  switch (value.kind) {
    case Value::Kind::undefined:
      return "Undefined";
    case Value::Kind::ns:
      return "Namespace";
    case Value::Kind::callable:
      return "function";
    case Value::Kind::data:
      break;
  }
  switch (value.data().type()) {
    case Json::value_t::null:
      return "NoneType";
    case Json::value_t::boolean:
      return "bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "int";
    case Json::value_t::number_float:
      return "float";
    case Json::value_t::string:
      return "str";
    case Json::value_t::array:
      return "list";
    case Json::value_t::object:
      return "dict";
    default:
      return "object";
  }
}

bool truthy(const Value& value) {
  if (value.kind == Value::Kind::undefined) return false;
  if (value.kind != Value::Kind::data) return true;
  const Json& d = value.data();
  if (d.is_null()) return false;
  if (d.is_boolean()) return d.get<bool>();
  if (d.is_number_float()) return d.get<double>() != 0.0;
  if (d.is_number()) return d.get<int64_t>() != 0;
  if (d.is_string()) return !d.get_ref<const std::string&>().empty();
  return !d.empty();  // lists, dicts
}

namespace {
bool is_numeric(const Json& j) { return j.is_number() || j.is_boolean(); }
double number_of(const Json& j) { return j.is_boolean() ? (j.get<bool>() ? 1.0 : 0.0) : j.get<double>(); }

bool json_equal(const Json& a, const Json& b) {
  if (is_numeric(a) && is_numeric(b)) {
    if (!a.is_number_float() && !b.is_number_float()) {
      auto as_int = [](const Json& j) { return j.is_boolean() ? int64_t(j.get<bool>()) : j.get<int64_t>(); };
      return as_int(a) == as_int(b);
    }
    return number_of(a) == number_of(b);
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
      if (!json_equal(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto other = b.find(it.key());
      if (other == b.end() || !json_equal(it.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}
}  // namespace

bool equal(const Value& a, const Value& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::undefined:
      return true;  // jinja2's Undefined equals any Undefined
    case Value::Kind::ns:
      return a.ns == b.ns;
    case Value::Kind::callable:
      return a.name == b.name && a.macro == b.macro && a.self == b.self;
    case Value::Kind::data:
      return json_equal(a.data(), b.data());
  }
  return false;
}

bool less(const Value& a, const Value& b, const Where& where) {
  if (a.kind == Value::Kind::data && b.kind == Value::Kind::data) {
    const Json &x = a.data(), &y = b.data();
    if (is_numeric(x) && is_numeric(y)) {
      if (!x.is_number_float() && !y.is_number_float() && !x.is_boolean() && !y.is_boolean())
        return x.get<int64_t>() < y.get<int64_t>();
      return number_of(x) < number_of(y);
    }
    if (x.is_string() && y.is_string()) return x.get_ref<const std::string&>() < y.get_ref<const std::string&>();
    if (x.is_array() && y.is_array()) {
      for (size_t i = 0; i < x.size() && i < y.size(); i++) {
        if (json_equal(x[i], y[i])) continue;
        return less(Value::of(x[i]), Value::of(y[i]), where);
      }
      return x.size() < y.size();
    }
  }
  fail_at(where, std::string("cannot order a ") + type_name(a) + " and a " + type_name(b));
}

std::string python_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  std::string scientific(buffer, result.ptr);  // shortest round trip: [-]d[.ddd]e[+-]XX
  std::string sign = scientific[0] == '-' ? "-" : "";
  if (!sign.empty()) scientific.erase(0, 1);
  size_t e = scientific.find('e');
  int exponent = std::stoi(scientific.substr(e + 1));
  std::string digits = scientific.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int n = static_cast<int>(digits.size());
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return sign + "0." + std::string(-exponent - 1, '0') + digits;
    if (n <= exponent + 1) return sign + digits + std::string(exponent + 1 - n, '0') + ".0";
    return sign + digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
  }
  char exp_text[16];
  std::snprintf(exp_text, sizeof exp_text, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return sign + digits.substr(0, 1) + (n > 1 ? "." + digits.substr(1) : "") + exp_text;
}

namespace {
std::string scalar_str(const Json& j) {
  if (j.is_null()) return "None";
  if (j.is_boolean()) return j.get<bool>() ? "True" : "False";
  if (j.is_number_float()) return python_float(j.get<double>());
  if (j.is_number_unsigned()) return std::to_string(j.get<uint64_t>());
  if (j.is_number()) return std::to_string(j.get<int64_t>());
  return "";
}

void hex_escape(std::string& out, const char* format, uint32_t cp) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, format, cp);
  out += buffer;
}
}  // namespace

std::string repr(const Json& value) {
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
    std::string out(1, quote);
    for_each_char(s, [&](size_t offset, size_t length, uint32_t cp) {
      if (cp == '\\' || cp == static_cast<uint32_t>(quote))
        out += '\\', out += static_cast<char>(cp);
      else if (cp == '\n')
        out += "\\n";
      else if (cp == '\r')
        out += "\\r";
      else if (cp == '\t')
        out += "\\t";
      else if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad)
        hex_escape(out, "\\x%02x", cp);
      else if (cp == 0x2028 || cp == 0x2029)
        hex_escape(out, "\\u%04x", cp);
      else
        out.append(s, offset, length);
    });
    return out + quote;
  }
  if (value.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < value.size(); i++) out += (i ? ", " : "") + repr(value[i]);
    return out + "]";
  }
  if (value.is_object()) {
    std::string out = "{";
    bool first = true;
    for (auto it = value.begin(); it != value.end(); ++it, first = false)
      out += (first ? "" : ", ") + repr(Json(it.key())) + ": " + repr(it.value());
    return out + "}";
  }
  return scalar_str(value);
}

std::string to_str(const Value& value) {
  switch (value.kind) {
    case Value::Kind::undefined:
      return "";
    case Value::Kind::ns:
      return "<Namespace " + repr(value.ns->attributes) + ">";
    case Value::Kind::callable:
      return "<function " + value.name + ">";
    case Value::Kind::data:
      break;
  }
  if (value.data().is_string()) return value.data().get<std::string>();
  if (value.data().is_array() || value.data().is_object()) return repr(value.data());
  return scalar_str(value.data());
}

namespace {
void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for_each_char(s, [&](size_t offset, size_t length, uint32_t cp) {
    switch (cp) {
      case '"':
        out += "\\\"";
        return;
      case '\\':
        out += "\\\\";
        return;
      case '\n':
        out += "\\n";
        return;
      case '\r':
        out += "\\r";
        return;
      case '\t':
        out += "\\t";
        return;
      case '\b':
        out += "\\b";
        return;
      case '\f':
        out += "\\f";
        return;
      default:
        break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
      if (cp >= 0x10000) {
        hex_escape(out, "\\u%04x", 0xd800 + ((cp - 0x10000) >> 10));
        hex_escape(out, "\\u%04x", 0xdc00 + ((cp - 0x10000) & 0x3ff));
      } else {
        hex_escape(out, "\\u%04x", cp);
      }
    } else {
      out.append(s, offset, length);
    }
  });
  out += '"';
}

void json_dump(std::string& out, const Json& value, bool ensure_ascii, int indent, int level,
               const std::string& item_sep, const std::string& key_sep, bool sort_keys) {
  auto newline = [&](int depth) {
    if (indent >= 0) out += '\n' + std::string(static_cast<size_t>(indent * depth), ' ');
  };
  if (value.is_string()) {
    json_string(out, value.get_ref<const std::string&>(), ensure_ascii);
  } else if (value.is_number_float()) {
    double d = value.get<double>();
    out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : python_float(d);
  } else if (value.is_null()) {
    out += "null";
  } else if (value.is_boolean()) {
    out += value.get<bool>() ? "true" : "false";
  } else if (value.is_array()) {
    if (value.empty()) return void(out += "[]");
    out += '[';
    for (size_t i = 0; i < value.size(); i++) {
      if (i) out += item_sep;
      newline(level + 1);
      json_dump(out, value[i], ensure_ascii, indent, level + 1, item_sep, key_sep, sort_keys);
    }
    newline(level);
    out += ']';
  } else if (value.is_object()) {
    if (value.empty()) return void(out += "{}");
    std::vector<std::string> keys;
    for (auto it = value.begin(); it != value.end(); ++it) keys.push_back(it.key());
    if (sort_keys) std::sort(keys.begin(), keys.end());
    out += '{';
    for (size_t i = 0; i < keys.size(); i++) {
      if (i) out += item_sep;
      newline(level + 1);
      json_string(out, keys[i], ensure_ascii);
      out += key_sep;
      json_dump(out, value.at(keys[i]), ensure_ascii, indent, level + 1, item_sep, key_sep, sort_keys);
    }
    newline(level);
    out += '}';
  } else {
    out += scalar_str(value);
  }
}
}  // namespace

std::string to_json(const Json& value, bool ensure_ascii, int indent, const std::string& item_separator,
                    const std::string& key_separator, bool sort_keys) {
  std::string out;
  json_dump(out, value, ensure_ascii, indent, 0, item_separator, key_separator, sort_keys);
  return out;
}

std::vector<uint32_t> code_points(const std::string& text) {
  std::vector<uint32_t> points;
  for_each_char(text, [&](size_t, size_t, uint32_t cp) { points.push_back(cp); });
  return points;
}

std::string from_code_points(const std::vector<uint32_t>& points, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end && i < points.size(); i++) append_utf8(out, points[i]);
  return out;
}

bool is_python_space(uint32_t cp) { return is_whitespace(cp) || (cp >= 0x1c && cp <= 0x1f); }

}  // namespace vkt::text::jinja
