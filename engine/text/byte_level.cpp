#include "engine/text/byte_level.hpp"

#include "engine/text/unicode.hpp"

namespace vkt::text {

ByteLevelMap::ByteLevelMap() {
  char_to_byte.fill(-1);
  // Printable bytes stand for themselves; the others (controls, space, 0x7f-0xa0, 0xad) are
  // numbered from U+0100 in byte order (openai/gpt-2 encoder.py bytes_to_unicode).
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; b++) printable[b] = true;
  for (int b = 0xa1; b <= 0xac; b++) printable[b] = true;
  for (int b = 0xae; b <= 0xff; b++) printable[b] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; b++) {
    uint32_t cp = printable[b] ? static_cast<uint32_t>(b) : next++;
    byte_to_char[b] = utf8_of(cp);
    char_to_byte[cp] = static_cast<int16_t>(b);
  }
}

const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap map;
  return map;
}

std::string bytes_to_byte_level(std::string_view text) {
  const auto& map = byte_level_map();
  std::string out(text.size() * 2, '\0');  // every stand-in character is 1 or 2 bytes of UTF-8
  size_t length = 0;
  for (unsigned char byte : text) {
    const std::string& stand_in = map.byte_to_char[byte];
    out[length++] = stand_in[0];
    if (stand_in.size() == 2) out[length++] = stand_in[1];
  }
  out.resize(length);
  return out;
}

const std::string& byte_level_char(uint8_t byte) { return byte_level_map().byte_to_char[byte]; }

}  // namespace vkt::text
