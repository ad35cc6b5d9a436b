#include "engine/text/vocabulary.hpp"

#include <functional>

namespace vkt::text {

namespace {
uint64_t hash_of(std::string_view token) { return std::hash<std::string_view>{}(token); }
}  // namespace

void Vocabulary::reserve(size_t count) {
  tokens_.reserve(count);
  ids_.reserve(count);
  entry_of_id_.reserve(count);
  size_t capacity = 16;
  while (capacity < count * 2) capacity *= 2;
  if (capacity > slots_.size()) {
    std::vector<uint64_t> old(capacity, 0);
    old.swap(slots_);
    for (uint64_t slot : old)
      if (slot) {
        uint32_t entry = static_cast<uint32_t>(slot) - 1;
        uint64_t hash = hash_of(tokens_[entry]);
        slots_[find_slot(tokens_[entry], hash)] = (hash >> 32 << 32) | (entry + 1);
      }
  }
}

size_t Vocabulary::find_slot(std::string_view token, uint64_t hash) const {
  // The high half of the hash is kept in the slot: most probes that would compare strings are
  // decided by it without touching the token's memory.
  const size_t mask = slots_.size() - 1;
  const uint64_t tag = hash >> 32 << 32;
  size_t slot = static_cast<size_t>(hash) & mask;
  while (slots_[slot]) {
    if ((slots_[slot] >> 32 << 32) == tag && tokens_[static_cast<uint32_t>(slots_[slot]) - 1] == token) return slot;
    slot = (slot + 1) & mask;
  }
  return slot;
}

void Vocabulary::assign(std::string_view token, uint32_t id) {
  if ((tokens_.size() + 1) * 2 > slots_.size()) reserve(tokens_.size() * 2 + 8);
  uint64_t hash = hash_of(token);
  size_t slot = find_slot(token, hash);
  if (slots_[slot]) {
    uint32_t entry = static_cast<uint32_t>(slots_[slot]) - 1;
    ids_[entry] = id;
    entry_of_id_.insert(id, entry);
  } else {
    uint32_t entry = static_cast<uint32_t>(tokens_.size());
    tokens_.emplace_back(token);
    ids_.push_back(id);
    slots_[slot] = (hash >> 32 << 32) | (entry + 1);
    entry_of_id_.insert(id, entry);
  }
  if (id > max_id_) max_id_ = id;
}

std::optional<uint32_t> Vocabulary::find(std::string_view token) const {
  if (slots_.empty()) return std::nullopt;
  size_t slot = find_slot(token, hash_of(token));
  if (!slots_[slot]) return std::nullopt;
  return ids_[static_cast<uint32_t>(slots_[slot]) - 1];
}

const std::string* Vocabulary::token_of(uint32_t id) const {
  const uint32_t* entry = entry_of_id_.find(id);
  return entry ? &tokens_[*entry] : nullptr;
}

}  // namespace vkt::text
