#include "engine/text/decoder.hpp"

#include <cctype>
#include <cstdlib>
#include <memory>

#include "engine/text/byte_level.hpp"
#include "engine/text/pattern.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

Decoder parse_decoder(const JsonNode& node) {
  std::string type = node.type();
  if (type == "Sequence") {
    auto steps = parse_each<Decoder>(node.at("decoders"), parse_decoder);
    return [steps](std::vector<std::string>& tokens) {
      for (const auto& step : steps) step(tokens);
    };
  }
  if (type == "ByteLevel") {
    return [](std::vector<std::string>& tokens) {
      const auto& map = byte_level_map();
      std::string bytes;
      for (const auto& token : tokens) {
        // A token whose characters are all stand-ins becomes their bytes; any other token (an
        // added token such as "<|eot_id|>" is made of stand-ins too) is taken as it is.
        std::string decoded;
        bool all_mapped = true;
        for_each_char(token, [&](size_t, size_t, uint32_t cp) {
          if (cp < map.char_to_byte.size() && map.char_to_byte[cp] >= 0)
            decoded += static_cast<char>(map.char_to_byte[cp]);
          else
            all_mapped = false;
        });
        bytes += all_mapped ? decoded : token;
      }
      tokens = {utf8_lossy(bytes)};
    };
  }
  if (type == "Metaspace") {
    uint32_t replacement = node.at("replacement").character();
    std::string scheme = "always";
    if (node.has("prepend_scheme")) scheme = node.at("prepend_scheme").string();
    if (node.has("add_prefix_space") && !node.at("add_prefix_space").boolean()) scheme = "never";
    return [replacement, scheme](std::vector<std::string>& tokens) {
      for (size_t i = 0; i < tokens.size(); i++) {
        std::string out;
        for_each_char(tokens[i], [&](size_t offset, size_t length, uint32_t cp) {
          if (cp != replacement)
            out.append(tokens[i], offset, length);
          else if (!(i == 0 && scheme != "never"))
            out += ' ';  // HF drops every replacement of the first token
        });
        tokens[i] = std::move(out);
      }
    };
  }
  if (type == "Replace") {
    auto pattern = std::make_shared<Pattern>(node.at("pattern"));
    std::string content = node.at("content").string();
    return [pattern, content](std::vector<std::string>& tokens) {
      for (auto& token : tokens) token = replace_matches(token, *pattern, content);
    };
  }
  if (type == "ByteFallback") {
    return [](std::vector<std::string>& tokens) {
      std::vector<std::string> out;
      std::string pending;  // bytes of consecutive <0xNN> tokens
      auto flush = [&]() {
        if (pending.empty()) return;
        if (first_invalid_utf8(pending) == std::string_view::npos)
          out.push_back(pending);
        else
          for (size_t i = 0; i < pending.size(); i++) out.push_back("\xef\xbf\xbd");  // one U+FFFD per byte, as HF
        pending.clear();
      };
      for (auto& token : tokens) {
        bool is_byte = token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>' &&
                       std::isxdigit(static_cast<unsigned char>(token[3])) &&
                       std::isxdigit(static_cast<unsigned char>(token[4]));
        if (is_byte) {
          pending += static_cast<char>(std::strtoul(token.substr(3, 2).c_str(), nullptr, 16));
        } else {
          flush();
          out.push_back(std::move(token));
        }
      }
      flush();
      tokens = std::move(out);
    };
  }
  if (type == "Fuse") {
    return [](std::vector<std::string>& tokens) {
      std::string joined;
      for (const auto& token : tokens) joined += token;
      tokens = {joined};
    };
  }
  if (type == "Strip") {
    uint32_t content = node.at("content").character();
    size_t start = node.at("start").unsigned_integer(), stop = node.at("stop").unsigned_integer();
    return [content, start, stop](std::vector<std::string>& tokens) {
      for (auto& token : tokens) {
        // Up to `start` leading and `stop` trailing `content` characters go (HF's Strip decoder);
        // the two cuts never cross.
        size_t begin = 0, end = token.size();
        for (size_t i = 0; i < start && begin < end; i++) {
          size_t length;
          if (decode_utf8_at(token, begin, &length) != content) break;
          begin += length;
        }
        for (size_t i = 0; i < stop && end > begin; i++) {
          size_t last = previous_char_start(token, end, begin);
          size_t length;
          if (decode_utf8_at(token, last, &length) != content) break;
          end = last;
        }
        token = token.substr(begin, end - begin);
      }
    };
  }
  if (type == "BPEDecoder") {
    std::string suffix = node.has("suffix") ? node.at("suffix").string() : "</w>";
    return [suffix](std::vector<std::string>& tokens) {
      for (size_t i = 0; i < tokens.size(); i++) {
        std::string replacement = i + 1 == tokens.size() ? "" : " ";
        std::string& token = tokens[i];
        if (suffix.empty()) continue;
        for (size_t at = token.find(suffix); at != std::string::npos; at = token.find(suffix, at + replacement.size()))
          token.replace(at, suffix.size(), replacement);
      }
    };
  }
  node.fail("decoder type \"" + type + "\" is not supported",
            "supported decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence");
}

}  // namespace vkt::text
