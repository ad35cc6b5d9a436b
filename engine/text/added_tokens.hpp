#pragma once
// Added tokens of tokenizer.json ("added_tokens"): cut out of the text before the model sees it.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/text/pre_tokenizer.hpp"

namespace vkt::text {

struct AddedToken {
  std::string content;
  std::string decoded;  // what decode() shows: the normalized content for normalized tokens
  uint32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = true;
};

// Leftmost-longest matching of a set of strings (what HF's Aho-Corasick automaton does), by
// walking a byte trie from each position.
class TokenMatcher {
 public:
  TokenMatcher() : nodes_(1) { root_children_.fill(0); }
  bool empty() const { return nodes_.size() == 1; }
  void add(const std::string& text, size_t token) {
    size_t node = 0;
    for (unsigned char byte : text) {
      size_t child = find_child(node, byte);
      if (child == 0) {
        child = nodes_.size();
        nodes_[node].children.emplace_back(byte, child);
        if (node == 0) root_children_[byte] = child;
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[node].token = static_cast<int64_t>(token);
  }
  // The longest string starting at `offset`: (token index, length), or token -1.
  std::pair<int64_t, size_t> longest_at(std::string_view text, size_t offset) const {
    int64_t best = -1;
    size_t best_length = 0, node = 0;
    for (size_t i = offset; i < text.size(); i++) {
      node = find_child(node, static_cast<unsigned char>(text[i]));
      if (node == 0) break;
      if (nodes_[node].token >= 0) best = nodes_[node].token, best_length = i + 1 - offset;
    }
    return {best, best_length};
  }

 private:
  struct TrieNode {
    std::vector<std::pair<unsigned char, size_t>> children;
    int64_t token = -1;
  };
  size_t find_child(size_t node, unsigned char byte) const {
    if (node == 0) return root_children_[byte];  // every position of the text starts here: one lookup
    for (const auto& [key, child] : nodes_[node].children)
      if (key == byte) return child;
    return 0;
  }
  std::vector<TrieNode> nodes_;
  std::array<size_t, 256> root_children_;
};

// HF's AddedVocabulary::find_matches + split: cuts the added tokens `matcher` finds out of one
// piece (honouring lstrip/rstrip/single_word); `added` are the tokens the matcher indexes.
std::vector<Piece> split_added_tokens(Piece piece, const TokenMatcher& matcher, const std::vector<AddedToken>& added);

}  // namespace vkt::text
