#include "engine/text/pre_tokenizer.hpp"

#include <memory>

#include "engine/text/byte_level.hpp"
#include "engine/text/pattern.hpp"
#include "engine/text/regex.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {

namespace {

// ======================= splitting with HF's delimiter behaviours =======================

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

SplitBehavior parse_behavior(const JsonNode& node) {
  std::string name = node.string();
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  node.fail("unknown split behavior \"" + name + "\"",
            "one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
}

struct Span {
  size_t begin, end;
  bool is_match;
};

// Matches of a character predicate: each matching character is its own match.
template <class Predicate>
std::vector<std::pair<size_t, size_t>> char_matches(std::string_view text, Predicate&& predicate) {
  std::vector<std::pair<size_t, size_t>> matches;
  for_each_char(text, [&](size_t offset, size_t length, uint32_t cp) {
    if (predicate(cp)) matches.emplace_back(offset, offset + length);
  });
  return matches;
}

// HF's NormalizedString::split: calls keep(begin, end) for each byte range that survives, in
// order. The text is seen as alternating non-match / match spans (HF's Pattern::find_matches;
// `invert` swaps the two); `matches` are sorted and do not overlap.
template <class Keep>
void split_ranges(size_t length, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                  bool invert, Keep&& keep) {
  auto for_each_span = [&](auto&& visit) {
    size_t previous = 0;
    for (const auto& [begin, end] : matches) {
      if (previous != begin) visit(previous, begin, invert);
      visit(begin, end, !invert);
      previous = end;
    }
    if (previous != length) visit(previous, length, invert);
  };
  switch (behavior) {
    case SplitBehavior::isolated:
      for_each_span([&](size_t begin, size_t end, bool) { keep(begin, end); });
      return;
    case SplitBehavior::removed:
      for_each_span([&](size_t begin, size_t end, bool is_match) {
        if (!is_match) keep(begin, end);
      });
      return;
    case SplitBehavior::contiguous:
    case SplitBehavior::merged_with_previous: {
      // contiguous: runs of equal flags merge; merged_with_previous: a match joins the span before it.
      bool have = false, previous_match = false;
      size_t current_begin = 0, current_end = 0;
      for_each_span([&](size_t begin, size_t end, bool is_match) {
        bool extend = have && (behavior == SplitBehavior::contiguous ? is_match == previous_match
                                                                     : (is_match && !previous_match));
        if (extend) {
          current_end = end;
        } else {
          if (have) keep(current_begin, current_end);
          current_begin = begin, current_end = end, have = true;
        }
        previous_match = is_match;
      });
      if (have) keep(current_begin, current_end);
      return;
    }
    case SplitBehavior::merged_with_next: {  // a match joins the span after it: walk backwards
      std::vector<Span> spans;
      for_each_span([&](size_t begin, size_t end, bool is_match) { spans.push_back({begin, end, is_match}); });
      std::vector<std::pair<size_t, size_t>> kept;
      bool previous_match = false;
      for (auto span = spans.rbegin(); span != spans.rend(); ++span) {
        if (span->is_match && !previous_match && !kept.empty())
          kept.back().first = span->begin;
        else
          kept.emplace_back(span->begin, span->end);
        previous_match = span->is_match;
      }
      for (auto range = kept.rbegin(); range != kept.rend(); ++range) keep(range->first, range->second);
      return;
    }
  }
}

// Passes text[begin, end) of `piece` on (nothing when empty).
void emit_range(const Piece& piece, size_t begin, size_t end, PieceSink& sink) {
  if (begin < end) sink.take({piece.text.substr(begin, end - begin), piece.at_start && begin == 0, std::nullopt});
}

}  // namespace

void parse_pre_tokenizer(const JsonNode& node, std::vector<PreTokenizerStep>& steps) {
  std::string type = node.type();
  if (type == "Sequence") {
    JsonNode list = node.at("pretokenizers");
    for (size_t i = 0; i < list.size(); i++) parse_pre_tokenizer(list[i], steps);
    return;
  }
  if (type == "ByteLevel") {
    bool add_prefix_space = node.boolean_or("add_prefix_space", true);
    bool use_regex = node.boolean_or("use_regex", true);
    auto regex = std::make_shared<Regex>(kGpt2Pattern);
    steps.push_back([add_prefix_space, use_regex, regex](Piece&& piece, PieceSink& sink) {
      if (add_prefix_space && piece.text[0] != ' ') piece.text.insert(piece.text.begin(), ' ');
      // Split (optionally), then spell every byte of each part with its stand-in character.
      auto emit_mapped = [&](size_t begin, size_t end) {
        if (begin < end)
          sink.take({bytes_to_byte_level(std::string_view(piece.text).substr(begin, end - begin)),
                     piece.at_start && begin == 0, std::nullopt});
      };
      if (use_regex)
        split_ranges(piece.text.size(), regex->find_all(piece.text), SplitBehavior::isolated, false, emit_mapped);
      else
        emit_mapped(0, piece.text.size());
    });
    return;
  }
  if (type == "Split") {
    auto pattern = std::make_shared<Pattern>(node.at("pattern"));
    SplitBehavior behavior = parse_behavior(node.at("behavior"));
    bool invert = node.boolean_or("invert", false);
    steps.push_back([pattern, behavior, invert](Piece&& piece, PieceSink& sink) {
      split_ranges(piece.text.size(), pattern->find_all(piece.text), behavior, invert,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
    return;
  }
  if (type == "Metaspace") {
    uint32_t replacement = node.at("replacement").character();
    std::string replacement_text = utf8_of(replacement);
    std::string scheme = "always";
    if (node.has("prepend_scheme")) scheme = node.at("prepend_scheme").string();
    if (node.has("add_prefix_space") && !node.at("add_prefix_space").boolean()) scheme = "never";
    if (scheme != "always" && scheme != "first" && scheme != "never")
      node.at("prepend_scheme").fail("must be \"first\", \"always\" or \"never\", got \"" + scheme + "\"");
    bool split = node.boolean_or("split", true);
    steps.push_back([replacement, replacement_text, scheme, split](Piece&& piece, PieceSink& sink) {
      std::string replaced;
      replaced.reserve(piece.text.size() + 8);
      for (char c : piece.text) {
        if (c == ' ')
          replaced += replacement_text;
        else
          replaced += c;
      }
      piece.text = std::move(replaced);
      bool starts_with_replacement = piece.text.compare(0, replacement_text.size(), replacement_text) == 0;
      if (!starts_with_replacement && (scheme == "always" || (scheme == "first" && piece.at_start)))
        piece.text.insert(0, replacement_text);
      if (!split) {
        sink.take(std::move(piece));
        return;
      }
      auto matches = char_matches(piece.text, [&](uint32_t cp) { return cp == replacement; });
      split_ranges(piece.text.size(), matches, SplitBehavior::merged_with_next, false,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
    return;
  }
  // Character-class splitters.
  auto add_char_split = [&](bool (*predicate)(uint32_t), SplitBehavior behavior) {
    steps.push_back([predicate, behavior](Piece&& piece, PieceSink& sink) {
      split_ranges(piece.text.size(), char_matches(piece.text, predicate), behavior, false,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
  };
  if (type == "Digits") {
    add_char_split(is_numeric,
                   node.boolean_or("individual_digits", false) ? SplitBehavior::isolated : SplitBehavior::contiguous);
    return;
  }
  if (type == "WhitespaceSplit") {
    add_char_split(is_whitespace, SplitBehavior::removed);
    return;
  }
  if (type == "Punctuation") {
    add_char_split(is_punctuation,
                   node.has("behavior") ? parse_behavior(node.at("behavior")) : SplitBehavior::isolated);
    return;
  }
  if (type == "Whitespace") {
    // \w+|[^\w\s]+ with the regex crate's Unicode \w; the matches are kept, the rest removed.
    auto regex = std::make_shared<Regex>(
        R"([\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\x{200C}\x{200D}]+|[^\p{L}\p{M}\p{Nd}\p{Nl}\p{Pc}\x{200C}\x{200D}\s]+)");
    steps.push_back([regex](Piece&& piece, PieceSink& sink) {
      split_ranges(piece.text.size(), regex->find_all(piece.text), SplitBehavior::removed, true,
                   [&](size_t begin, size_t end) { emit_range(piece, begin, end, sink); });
    });
    return;
  }
  node.fail("pre-tokenizer type \"" + type + "\" is not supported",
            "supported pre-tokenizers: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, "
            "Sequence");
}

}  // namespace vkt::text
