#pragma once
// UTF-8 decoding and encoding, and the Unicode properties the tokenizer pipeline asks about, with
// the meanings Rust's char methods and the regex crate give them (HF tokenizers is written in Rust).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vkt::text {

size_t utf8_sequence_length(unsigned char lead);
// Code point of the (valid) UTF-8 sequence at text[offset]; sets *length.
uint32_t decode_utf8_at(std::string_view text, size_t offset, size_t* length);
// Offset of the character that ends at `end` (> floor) in valid UTF-8, never before `floor`.
size_t previous_char_start(std::string_view text, size_t end, size_t floor);
void append_utf8(std::string& out, uint32_t cp);
std::string utf8_of(uint32_t cp);
// Byte offset of the first byte that is not part of well-formed UTF-8, or npos.
size_t first_invalid_utf8(std::string_view text);
// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes_text);

// Rust's char::is_whitespace (the Unicode White_Space property).
bool is_whitespace(uint32_t cp);
// Rust's char::is_numeric: Nd, Nl, No.
bool is_numeric(uint32_t cp);
// The regex crate's Unicode \w: alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(uint32_t cp);
bool is_punctuation(uint32_t cp);
bool is_mark(uint32_t cp);  // general category Mn, Mc or Me (what StripAccents removes)

enum class NormalForm { nfc, nfd, nfkc, nfkd };
// Unicode normalization of valid UTF-8 text (utf8proc); UserError when it fails.
std::string normalize(const std::string& text, NormalForm form);
// Rust's str::to_lowercase.
std::string to_lowercase(std::string_view text);

// Calls f(offset, length, code point) for each character of valid UTF-8 text.
template <class F>
void for_each_char(std::string_view text, F&& f) {
  size_t offset = 0;
  while (offset < text.size()) {
    size_t length;
    uint32_t cp = decode_utf8_at(text, offset, &length);
    f(offset, length, cp);
    offset += length;
  }
}

}  // namespace vkt::text
