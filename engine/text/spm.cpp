// llama.cpp's SentencePiece tokenizer (src/llama-vocab.cpp, llm_tokenizer_spm_session), which GGUF
// files of tokenizer.ggml.model "llama" are run with: one symbol per UTF-8 character; the adjacent
// pair whose concatenation is a token with the highest score merges first (the leftmost on equal
// scores), until no pair forms a token; a symbol that is not a token becomes its bytes' <0xNN>
// tokens. Unlike HF's BPE there is no merge list: any token of the vocabulary (control, byte and
// unused ones too, as llama.cpp's text_to_token) can be formed.
#include <queue>

#include "engine/base/log.hpp"
#include "engine/text/bpe.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

void BpeModel::tokenize_spm(const std::string& text, std::vector<uint32_t>& out) const {
  struct Symbol {
    int32_t previous, next;
    size_t offset, length;  // length 0 once merged into its left neighbour
  };
  struct Bigram {
    float score;
    int32_t left, right;
    size_t length;  // of the merged text: a stale entry no longer matches its symbols
  };
  auto worse = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);  // llm_bigram_spm::comparator
  };
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    size_t length;
    decode_utf8_at(text, offset, &length);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, offset + length == text.size() ? -1 : index + 1, offset, length});
    offset += length;
  }
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t length = symbols[left].length + symbols[right].length;
    const auto id = vocab.find(std::string_view(text).substr(symbols[left].offset, length));
    if (!id || *id >= spm_scores.size()) return;
    queue.push({spm_scores[*id], left, right, length});
  };
  for (size_t i = 1; i < symbols.size(); i++) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != top.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].previous = top.left;
    try_add(left.previous, top.left);
    try_add(top.left, left.next);
  }
  // Every merged symbol is a token; a single character may not be: its bytes then (llama.cpp's
  // byte_to_token: <0xNN>, else the one-byte token), else unk, else it is dropped with a warning.
  for (int32_t i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = std::string_view(text).substr(symbols[i].offset, symbols[i].length);
    if (auto id = vocab.find(piece)) {
      out.push_back(*id);
      continue;
    }
    for (unsigned char byte : piece) {
      std::optional<uint32_t> id = byte_ids[byte];
      if (!id) id = vocab.find(std::string(1, static_cast<char>(byte)));
      if (!id) id = unk_id;
      if (id) {
        out.push_back(*id);
      } else if (!warned_dropped.exchange(true)) {
        log::warn("tokenizer: a byte with no <0xNN> token was dropped (the GGUF vocabulary has no byte tokens)");
      }
    }
  }
}

}  // namespace vkt::text
