#pragma once
// The GPT-2 byte-to-unicode map (bytes that are printable stay themselves; the others are shifted
// to U+0100...), used by the ByteLevel pre-tokenizer, normalizer and decoder and by the trainer.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace vkt::text {

struct ByteLevelMap {
  std::array<std::string, 256> byte_to_char;  // byte -> UTF-8 of its stand-in character
  std::array<int16_t, 0x180> char_to_byte{};  // stand-in code point -> byte, -1 when not a stand-in

  ByteLevelMap();
};

const ByteLevelMap& byte_level_map();
// Each byte of `text` spelled with its stand-in character.
std::string bytes_to_byte_level(std::string_view text);
// byte -> UTF-8 of its stand-in character.
const std::string& byte_level_char(uint8_t byte);

}  // namespace vkt::text
