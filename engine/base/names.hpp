#pragma once
// Names the user writes (flags, YAML, config.json) for an enum, kept in one table per enum:
// parsing, printing, --help lists and error hints all read that table, so each name is spelled
// once. The first entry of a value is its canonical name; later entries for it are aliases that
// parse but are never printed (e.g. "int4_asym" for "int4-asym").
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "engine/base/error.hpp"

namespace vkt {

template <typename Enum>
struct NameEntry {
  Enum value;
  const char* name;
};

template <typename Enum>
std::optional<Enum> enum_from_name(std::span<const NameEntry<Enum>> table, std::string_view name) {
  for (const auto& entry : table)
    if (name == entry.name) return entry.value;
  return std::nullopt;
}

// The canonical name of `value`; "?" when the table lacks it (a bug).
template <typename Enum>
const char* enum_name(std::span<const NameEntry<Enum>> table, Enum value) {
  for (const auto& entry : table)
    if (entry.value == value) return entry.name;
  return "?";
}

// The canonical names joined by `separator`: "a, b, c" for hints, "a | b | c" for --help.
template <typename Enum>
std::string enum_name_list(std::span<const NameEntry<Enum>> table, std::string_view separator = ", ") {
  std::string list;
  for (size_t i = 0; i < table.size(); i++) {
    bool alias = false;
    for (size_t j = 0; j < i; j++) alias = alias || table[j].value == table[i].value;
    if (alias) continue;
    if (!list.empty()) list += separator;
    list += table[i].name;
  }
  return list;
}

// The value of a flag (or option) `flag` named `value`; UserError "FLAG 'VALUE' is not supported"
// listing the valid names otherwise.
template <typename Enum>
Enum enum_from_flag(std::span<const NameEntry<Enum>> table, std::string_view value, const std::string& flag) {
  if (auto parsed = enum_from_name(table, value)) return *parsed;
  throw UserError(flag + " '" + std::string(value) + "' is not supported", "use one of: " + enum_name_list(table));
}

}  // namespace vkt
