#include "engine/text/unicode.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "engine/base/error.hpp"

namespace vkt::text {

namespace {

utf8proc_category_t category(uint32_t cp) { return utf8proc_category(static_cast<utf8proc_int32_t>(cp)); }

bool is_letter(utf8proc_category_t c) { return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO; }
bool is_mark(utf8proc_category_t c) { return c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME; }

}  // namespace

size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;  // not a lead byte: only reached on invalid input, which is validated away first
}

uint32_t decode_utf8_at(std::string_view text, size_t offset, size_t* length) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data()) + offset;
  size_t n = std::min(utf8_sequence_length(bytes[0]), text.size() - offset);
  *length = n;
  if (n == 1) return bytes[0];
  uint32_t cp = bytes[0] & (0xff >> (n + 1));
  for (size_t i = 1; i < n; i++) cp = (cp << 6) | (bytes[i] & 0x3f);
  return cp;
}

size_t previous_char_start(std::string_view text, size_t end, size_t floor) {
  size_t start = end - 1;
  while (start > floor && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80) start--;
  return start;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::string utf8_of(uint32_t cp) {
  std::string text;
  append_utf8(text, cp);
  return text;
}

size_t first_invalid_utf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(bytes + offset, static_cast<utf8proc_ssize_t>(text.size() - offset), &cp);
    if (n <= 0) return offset;
    offset += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view bytes_text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(bytes_text.data());
  const size_t size = bytes_text.size();
  std::string out;
  out.reserve(size);
  size_t i = 0;
  while (i < size) {
    unsigned char lead = bytes[i];
    if (lead < 0x80) {
      out += static_cast<char>(lead);
      i++;
      continue;
    }
    size_t need = 0;
    unsigned char low = 0x80, high = 0xbf;  // allowed range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf)
      need = 1;
    else if (lead == 0xe0)
      need = 2, low = 0xa0;
    else if (lead >= 0xe1 && lead <= 0xec)
      need = 2;
    else if (lead == 0xed)
      need = 2, high = 0x9f;
    else if (lead >= 0xee && lead <= 0xef)
      need = 2;
    else if (lead == 0xf0)
      need = 3, low = 0x90;
    else if (lead >= 0xf1 && lead <= 0xf3)
      need = 3;
    else if (lead == 0xf4)
      need = 3, high = 0x8f;
    if (need == 0) {
      out += "\xef\xbf\xbd";
      i++;
      continue;
    }
    size_t j = 1;
    for (; j <= need && i + j < size; j++) {
      unsigned char c = bytes[i + j];
      bool ok = j == 1 ? (c >= low && c <= high) : (c >= 0x80 && c <= 0xbf);
      if (!ok) break;
    }
    if (j == need + 1) {
      out.append(bytes_text.substr(i, need + 1));
    } else {
      out += "\xef\xbf\xbd";
    }
    i += j;
  }
  return out;
}

bool is_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool is_numeric(uint32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool is_word_char(uint32_t cp) {
  auto c = category(cp);
  return is_letter(c) || is_mark(c) || c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL ||
         c == UTF8PROC_CATEGORY_PC || cp == 0x200c || cp == 0x200d;
}

bool is_punctuation(uint32_t cp) {
  if (cp < 0x80) return std::ispunct(static_cast<int>(cp)) != 0;
  auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_mark(uint32_t cp) { return is_mark(category(cp)); }

std::string normalize(const std::string& text, NormalForm form) {
  int options = form == NormalForm::nfc    ? UTF8PROC_COMPOSE
                : form == NormalForm::nfd  ? UTF8PROC_DECOMPOSE
                : form == NormalForm::nfkc ? UTF8PROC_COMPOSE | UTF8PROC_COMPAT
                                           : UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  utf8proc_uint8_t* result = nullptr;
  utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &result, static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  if (length < 0) throw UserError(std::string("unicode normalization failed: ") + utf8proc_errmsg(length));
  std::string out(reinterpret_cast<char*>(result), static_cast<size_t>(length));
  std::free(result);
  return out;
}

std::string to_lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for_each_char(text, [&](size_t, size_t, uint32_t cp) {
    // Rust's char::to_lowercase: U+0130 is the one character whose lowercase is two characters.
    if (cp == 0x130)
      out += "i\xcc\x87";
    else
      append_utf8(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  });
  return out;
}

}  // namespace vkt::text
