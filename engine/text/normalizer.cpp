#include "engine/text/normalizer.hpp"

#include <memory>

#include "engine/text/byte_level.hpp"
#include "engine/text/pattern.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

namespace {

std::string strip_whitespace(const std::string& text, bool left, bool right) {
  size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end) {
      size_t length;
      if (!is_whitespace(decode_utf8_at(text, begin, &length))) break;
      begin += length;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = previous_char_start(text, end, begin);
      size_t length;
      if (!is_whitespace(decode_utf8_at(text, start, &length))) break;
      end = start;
    }
  }
  return text.substr(begin, end - begin);
}

}  // namespace

Normalizer parse_normalizer(const JsonNode& node) {
  std::string type = node.type();
  if (type == "Sequence") {
    auto steps = parse_each<Normalizer>(node.at("normalizers"), parse_normalizer);
    return [steps](std::string& text) {
      for (const auto& step : steps) step(text);
    };
  }
  if (type == "NFC") return [](std::string& text) { text = normalize(text, NormalForm::nfc); };
  if (type == "NFD") return [](std::string& text) { text = normalize(text, NormalForm::nfd); };
  if (type == "NFKC") return [](std::string& text) { text = normalize(text, NormalForm::nfkc); };
  if (type == "NFKD") return [](std::string& text) { text = normalize(text, NormalForm::nfkd); };
  if (type == "Lowercase") return [](std::string& text) { text = to_lowercase(text); };
  if (type == "Prepend") {
    std::string prefix = node.at("prepend").string();
    return [prefix](std::string& text) {
      if (!text.empty()) text = prefix + text;
    };
  }
  if (type == "Replace") {
    auto pattern = std::make_shared<Pattern>(node.at("pattern"));
    std::string content = node.at("content").string();
    return [pattern, content](std::string& text) { text = replace_matches(text, *pattern, content); };
  }
  if (type == "Strip") {
    bool left = node.boolean_or("strip_left", true), right = node.boolean_or("strip_right", true);
    return [left, right](std::string& text) { text = strip_whitespace(text, left, right); };
  }
  if (type == "StripAccents") {
    return [](std::string& text) {
      std::string out;
      for_each_char(text, [&](size_t offset, size_t length, uint32_t cp) {
        if (!is_mark(cp)) out.append(text, offset, length);
      });
      text = std::move(out);
    };
  }
  if (type == "ByteLevel") return [](std::string& text) { text = bytes_to_byte_level(text); };
  node.fail("normalizer type \"" + type + "\" is not supported",
            "supported normalizers: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, StripAccents, ByteLevel, "
            "Sequence");
}

}  // namespace vkt::text
