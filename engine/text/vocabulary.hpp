#pragma once
// Flat hash tables for a tokenizer's vocabulary (token <-> id) and merges ((left, right) -> result).
// A 262k-token vocabulary with 515k merges (Gemma 3) is built on every load; node-based
// std::unordered_maps spent most of that time allocating nodes and chasing pointers. These are
// open-addressing tables with linear probing in a few flat arrays; nothing is ever removed.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vkt::text {

// uint64 key -> Value. Key ~0 is reserved (marks an empty slot).
template <class Value>
class FlatU64Map {
 public:
  static constexpr uint64_t kEmpty = ~0ull;
  void reserve(size_t count) {
    if (count * 2 > keys_.size()) rehash(capacity_for(count));
  }
  size_t size() const { return size_; }
  // Inserts or overwrites.
  void assign(uint64_t key, const Value& value) {
    if ((size_ + 1) * 2 > keys_.size()) rehash(capacity_for(size_ + 1));
    size_t slot = find_slot(key);
    if (keys_[slot] == kEmpty) keys_[slot] = key, size_++;
    values_[slot] = value;
  }
  // Inserts when absent; returns whether it did.
  bool insert(uint64_t key, const Value& value) {
    if ((size_ + 1) * 2 > keys_.size()) rehash(capacity_for(size_ + 1));
    size_t slot = find_slot(key);
    if (keys_[slot] != kEmpty) return false;
    keys_[slot] = key, values_[slot] = value, size_++;
    return true;
  }
  const Value* find(uint64_t key) const {
    if (keys_.empty()) return nullptr;
    size_t slot = find_slot(key);
    return keys_[slot] == kEmpty ? nullptr : &values_[slot];
  }

 private:
  static size_t capacity_for(size_t count) {
    size_t capacity = 16;
    while (capacity < count * 2) capacity *= 2;
    return capacity;
  }
  size_t find_slot(uint64_t key) const {
    size_t mask = keys_.size() - 1;
    size_t slot = static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    while (keys_[slot] != kEmpty && keys_[slot] != key) slot = (slot + 1) & mask;
    return slot;
  }
  void rehash(size_t capacity) {
    std::vector<uint64_t> old_keys(capacity, kEmpty);
    std::vector<Value> old_values(capacity);
    old_keys.swap(keys_);
    old_values.swap(values_);
    size_ = 0;
    for (size_t i = 0; i < old_keys.size(); i++)
      if (old_keys[i] != kEmpty) insert(old_keys[i], old_values[i]);
  }
  std::vector<uint64_t> keys_;
  std::vector<Value> values_;
  size_t size_ = 0;
};

// token <-> id. A token listed twice keeps its last id; an id listed twice names its first token.
class Vocabulary {
 public:
  void reserve(size_t count);
  void assign(std::string_view token, uint32_t id);
  std::optional<uint32_t> find(std::string_view token) const;
  const std::string* token_of(uint32_t id) const;  // nullptr when no token has this id
  size_t size() const { return tokens_.size(); }
  bool empty() const { return tokens_.empty(); }
  uint32_t max_id() const { return max_id_; }

 private:
  size_t find_slot(std::string_view token, uint64_t hash) const;
  std::vector<std::string> tokens_;  // entry -> token
  std::vector<uint32_t> ids_;        // entry -> id
  std::vector<uint64_t> slots_;      // (hash high 32 bits << 32) | (entry + 1); 0: empty
  FlatU64Map<uint32_t> entry_of_id_;
  uint32_t max_id_ = 0;
};

}  // namespace vkt::text
