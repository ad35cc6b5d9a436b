#include "engine/text/bpe.hpp"

#include <queue>

#include "engine/base/log.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

namespace {

uint64_t pair_key(uint32_t left, uint32_t right) { return (static_cast<uint64_t>(left) << 32) | right; }

}  // namespace

void BpeModel::tokenize(const std::string& text, std::vector<uint32_t>& out) const {
  if (text.empty()) return;
  if (text.size() <= kCacheMaxWordBytes) {
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto found = cache.find(text);
      if (found != cache.end()) {
        out.insert(out.end(), found->second.begin(), found->second.end());
        return;
      }
    }
    size_t before = out.size();
    tokenize_uncached(text, out);
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() < kCacheCapacity)
      cache.emplace(text, std::vector<uint32_t>(out.begin() + static_cast<long>(before), out.end()));
    return;
  }
  tokenize_uncached(text, out);
}

void BpeModel::tokenize_uncached(const std::string& text, std::vector<uint32_t>& out) const {
  if (!spm_scores.empty()) return tokenize_spm(text, out);
  if (ignore_merges) {  // Llama 3: a pre-token that is itself in the vocabulary is one token
    if (auto found = vocab.find(text)) {
      out.push_back(*found);
      return;
    }
  }
  struct Symbol {
    uint32_t id;
    int32_t previous, next;
    uint32_t length;  // bytes of the text it covers; 0 once merged into its left neighbour
  };
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  auto add = [&](uint32_t id, uint32_t length) {
    int32_t index = static_cast<int32_t>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, length});
  };

  // Initial symbols: one per character (HF's BPE::merge_word), with byte fallback and unk.
  bool has_pending_unk = false;  // an unk symbol not yet added (consecutive ones fuse when fuse_unk)
  uint32_t pending_unk_length = 0;
  size_t offset = 0;
  std::string lookup;
  while (offset < text.size()) {
    size_t length;
    decode_utf8_at(text, offset, &length);
    bool first = offset == 0, last = offset + length == text.size();
    lookup.assign(text, offset, length);
    if (!first && !continuing_subword_prefix.empty()) lookup = continuing_subword_prefix + lookup;
    if (last && !end_of_word_suffix.empty()) lookup += end_of_word_suffix;
    offset += length;
    if (auto found = vocab.find(lookup)) {
      if (has_pending_unk) add(*unk_id, pending_unk_length);
      has_pending_unk = false;
      add(*found, static_cast<uint32_t>(length));
      continue;
    }
    if (byte_fallback) {
      bool all_bytes = true;
      for (unsigned char byte : lookup) all_bytes = all_bytes && byte_ids[byte].has_value();
      if (all_bytes) {
        for (unsigned char byte : lookup) add(*byte_ids[byte], 1);
        continue;  // as HF: a pending unk stays pending across byte-fallback tokens
      }
    }
    if (unk_id) {
      if (has_pending_unk && fuse_unk) {
        pending_unk_length += static_cast<uint32_t>(length);
      } else {
        if (has_pending_unk) add(*unk_id, pending_unk_length);
        has_pending_unk = true;
        pending_unk_length = static_cast<uint32_t>(length);
      }
    } else if (!warned_dropped.exchange(true)) {
      log::warn(
          "tokenizer: a character the vocabulary cannot encode (no byte fallback, no unk token) was dropped, as "
          "Hugging Face tokenizers does");
    }
  }
  if (has_pending_unk) add(*unk_id, pending_unk_length);

  // Merge the lowest-ranked adjacent pair first (leftmost on ties) until none applies
  // (HF's Word::merge_all without dropout).
  struct Candidate {
    uint32_t rank, position, new_id;
  };
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> queue(worse);
  for (size_t i = 0; i + 1 < symbols.size(); i++) {
    if (auto merge = merges.find(pair_key(symbols[i].id, symbols[i + 1].id)))
      queue.push({merge->rank, static_cast<uint32_t>(i), merge->new_id});
  }
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.position];
    if (left.length == 0 || left.next == -1) continue;
    Symbol right = symbols[left.next];
    auto merge = merges.find(pair_key(left.id, right.id));
    if (!merge || merge->new_id != top.new_id) continue;  // stale entry
    int32_t right_index = left.next;
    left.id = top.new_id;
    left.length += right.length;
    left.next = right.next;
    symbols[right_index].length = 0;
    if (right.next >= 0) symbols[right.next].previous = static_cast<int32_t>(top.position);
    if (left.previous >= 0) {
      if (auto with_previous = merges.find(pair_key(symbols[left.previous].id, left.id)))
        queue.push({with_previous->rank, static_cast<uint32_t>(left.previous), with_previous->new_id});
    }
    if (left.next >= 0) {
      if (auto with_next = merges.find(pair_key(left.id, symbols[left.next].id)))
        queue.push({with_next->rank, top.position, with_next->new_id});
    }
  }
  for (const Symbol& symbol : symbols)
    if (symbol.length != 0) out.push_back(symbol.id);
}

std::unique_ptr<BpeModel> parse_bpe_model(const JsonNode& node, const StreamedBpeTables* streamed) {
  std::string type = node.type();
  if (type.empty() && !node.has("merges"))
    node.fail("has no \"type\" and no \"merges\": not a BPE model",
              "vktune reads BPE tokenizers (Llama, Mistral, Qwen2, GPT-2 style)");
  if (!type.empty() && type != "BPE" && type != "LlamaCppSpm")
    node.at("type").fail("model type \"" + type + "\" is not supported",
                         "vktune reads BPE tokenizers (Llama, Mistral, Qwen2, GPT-2 style); Unigram/WordPiece models "
                         "(T5, Gemma's sentencepiece unigram, BERT) are not supported");
  auto model = std::make_unique<BpeModel>();
  JsonNode vocab = node.at("vocab");
  if (!vocab.value().is_object()) vocab.fail("must be an object mapping tokens to ids");
  // The vocabulary and merges of a 262k-token model are ~800k JSON values: read them straight from
  // the document (or the streamed lists); a JsonNode (with its path string) is made only for an error.
  if (streamed) {
    model->vocab.reserve(streamed->vocab.size());
    for (const auto& [token, id] : streamed->vocab) model->vocab.assign(token, id);
  } else {
    model->vocab.reserve(vocab.value().size());
    for (const auto& [token, id_value] : vocab.value().items()) {
      if (!id_value.is_number_unsigned() || id_value.get<uint64_t>() > 0xfffffffeull)
        JsonNode(id_value, vocab.child_path(token), vocab.where()).id();  // throws, naming the entry
      model->vocab.assign(token, id_value.get<uint32_t>());
    }
  }
  if (auto unk = node.get("unk_token")) {
    std::string unk_token = unk->string();
    model->unk_id = model->vocab.find(unk_token);
    if (!model->unk_id) unk->fail("\"" + unk_token + "\" is not in model.vocab");
  }
  model->fuse_unk = node.boolean_or("fuse_unk", false);
  model->byte_fallback = node.boolean_or("byte_fallback", false);
  model->ignore_merges = node.boolean_or("ignore_merges", false);
  if (auto prefix = node.get("continuing_subword_prefix")) model->continuing_subword_prefix = prefix->string();
  if (auto suffix = node.get("end_of_word_suffix")) model->end_of_word_suffix = suffix->string();
  if (auto dropout = node.get("dropout"); dropout && dropout->value().is_number() && dropout->value().get<double>() > 0)
    log::warn(node.where() + ": model.dropout is ignored (encoding is deterministic)");
  static const char* kHex = "0123456789ABCDEF";
  for (int byte = 0; byte < 256; byte++) {
    std::string name = std::string("<0x") + kHex[byte >> 4] + kHex[byte & 15] + ">";
    model->byte_ids[byte] = model->vocab.find(name);
  }

  if (type == "LlamaCppSpm") {
    if (model->vocab.empty()) node.at("vocab").fail("is empty");
    const JsonNode scores = node.at("scores");
    const size_t count = size_t{model->vocab.max_id()} + 1;
    if (!scores.value().is_array() || scores.value().size() != count)
      scores.fail("must list one score per id (" + std::to_string(count) + ")");
    model->spm_scores.reserve(count);
    for (const auto& score : scores.value()) {
      if (!score.is_number()) scores.fail("must hold numbers");
      model->spm_scores.push_back(score.get<float>());
    }
    return model;
  }
  JsonNode merges = node.at("merges");
  const nlohmann::json& merge_list = merges.value();
  size_t count = streamed ? streamed->merges.size() : merges.size();
  model->merges.reserve(count);
  const size_t prefix_length = model->continuing_subword_prefix.size();
  uint32_t rank = 0;
  std::string merged;
  auto fail_at = [&](size_t i, const std::string& problem) {
    JsonNode(streamed ? nlohmann::json() : merge_list[i], merges.path() + "[" + std::to_string(i) + "]", merges.where())
        .fail(problem);
  };
  auto add_merge = [&](std::string_view left, std::string_view right, size_t i) {
    auto left_id = model->vocab.find(left);
    auto right_id = model->vocab.find(right);
    if (!left_id) fail_at(i, "token \"" + std::string(left) + "\" is not in model.vocab");
    if (!right_id) fail_at(i, "token \"" + std::string(right) + "\" is not in model.vocab");
    if (right.size() < prefix_length)
      fail_at(i, "token \"" + std::string(right) + "\" is shorter than continuing_subword_prefix");
    merged.assign(left).append(right.substr(prefix_length));
    auto merged_id = model->vocab.find(merged);
    if (!merged_id) fail_at(i, "the merged token \"" + merged + "\" is not in model.vocab");
    model->merges.assign(pair_key(*left_id, *right_id), {rank++, *merged_id});  // a repeat wins, as in HF
  };
  for (size_t i = 0; i < count; i++) {
    if (streamed) {  // its index differs from the file's only after a "#version" line
      add_merge(streamed->merges[i].first, streamed->merges[i].second, i);
      continue;
    }
    const nlohmann::json& merge = merge_list[i];
    if (merge.is_string()) {  // legacy "a b"
      const std::string& line = merge.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;  // a merges.txt header line, not a merge
      size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
        fail_at(i, "\"" + line + "\" must be two tokens separated by one space");
      add_merge(std::string_view(line).substr(0, space), std::string_view(line).substr(space + 1), i);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {  // ["a", "b"]
      add_merge(merge[0].get_ref<const std::string&>(), merge[1].get_ref<const std::string&>(), i);
    } else {
      fail_at(i, "must be \"a b\" or [\"a\", \"b\"], got " + merge.dump().substr(0, 80));
    }
  }
  return model;
}

}  // namespace vkt::text
