#pragma once
// Reading tokenizer.json: a JSON value together with its path ("model.merges[3]"), so that every
// error names the file, the place in it and what is wrong.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

inline const char* const kTokenizerHint =
    "the tokenizer.json is damaged or was written by an incompatible tool: download the model's tokenizer.json again";

class JsonNode {
 public:
  JsonNode(const nlohmann::json& value, std::string path, const std::string& where)
      : value_(&value), path_(std::move(path)), where_(&where) {}

  const nlohmann::json& value() const { return *value_; }
  const std::string& path() const { return path_; }
  const std::string& where() const { return *where_; }

  [[noreturn]] void fail(const std::string& problem, const std::string& hint = kTokenizerHint) const {
    throw UserError(*where_ + ": " + (path_.empty() ? std::string("(top level)") : path_) + ": " + problem, hint);
  }

  std::string child_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  bool has(const char* key) const { return value_->is_object() && value_->contains(key) && !(*value_)[key].is_null(); }
  JsonNode at(const char* key) const {
    if (!value_->is_object()) fail("must be an object, got " + value_->dump());
    if (!has(key)) JsonNode(*value_, child_path(key), *where_).fail("is missing");
    return JsonNode((*value_)[key], child_path(key), *where_);
  }
  std::optional<JsonNode> get(const char* key) const {
    if (!has(key)) return std::nullopt;
    return JsonNode((*value_)[key], child_path(key), *where_);
  }
  JsonNode operator[](size_t index) const {
    return JsonNode((*value_)[index], path_ + "[" + std::to_string(index) + "]", *where_);
  }
  size_t size() const {
    if (!value_->is_array()) fail("must be a list, got " + value_->dump().substr(0, 80));
    return value_->size();
  }

  std::string string() const {
    if (!value_->is_string()) fail("must be a string, got " + value_->dump().substr(0, 80));
    return value_->get<std::string>();
  }
  bool boolean() const {
    if (!value_->is_boolean()) fail("must be true or false, got " + value_->dump().substr(0, 80));
    return value_->get<bool>();
  }
  uint64_t unsigned_integer() const {
    if (!value_->is_number_integer() || (!value_->is_number_unsigned() && value_->get<int64_t>() < 0))
      fail("must be a non-negative integer, got " + value_->dump().substr(0, 80));
    return value_->get<uint64_t>();
  }
  uint32_t id() const {
    uint64_t value = unsigned_integer();
    if (value > 0xfffffffeull) fail("token id " + std::to_string(value) + " does not fit 32 bits");
    return static_cast<uint32_t>(value);
  }
  // One character (Metaspace's replacement, Strip's content).
  uint32_t character() const {
    std::string text = string();
    size_t length = 0;
    if (text.empty() || first_invalid_utf8(text) != std::string_view::npos ||
        (decode_utf8_at(text, 0, &length), length != text.size()))
      fail("must be exactly one character, got \"" + text + "\"");
    return decode_utf8_at(text, 0, &length);
  }
  bool boolean_or(const char* key, bool fallback) const { return has(key) ? at(key).boolean() : fallback; }
  std::string type() const { return has("type") ? at("type").string() : std::string(); }

 private:
  const nlohmann::json* value_;
  std::string path_;
  const std::string* where_;
};

// The parsed steps of a component's Sequence: `parse` applied to each entry of `list`.
template <class Step, class Parse>
std::vector<Step> parse_each(const JsonNode& list, Parse&& parse) {
  std::vector<Step> steps;
  for (size_t i = 0; i < list.size(); i++) steps.push_back(parse(list[i]));
  return steps;
}

}  // namespace vkt::text
