#pragma once
// Hugging Face tokenizers' tokenizer.json for BPE models, re-implemented to give the same ids:
//   - byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM): ByteLevel pre-tokenizer (with or without its
//     GPT-2 regex), Split pre-tokenizers with a regex, Sequence; the GPT-2 byte-to-unicode map;
//   - sentencepiece-style BPE (Llama 2, TinyLlama, Mistral): normalizer Prepend("▁") + Replace(" ",
//     "▁") or the Metaspace pre-tokenizer (prepend_scheme first/always/never), byte_fallback
//     (<0xNN> tokens), unk with fuse_unk.
// Pipeline, as HF runs it: added tokens are cut out of the raw text (leftmost-longest, honouring
// lstrip/rstrip/single_word; "normalized" ones are matched after normalization), each remaining
// piece is normalized and pre-tokenized, each pre-token is BPE-encoded (lowest merge rank first,
// leftmost on ties), then the post-processor adds special tokens (TemplateProcessing,
// RobertaProcessing, BertProcessing; ByteLevel adds nothing). decode() maps ids to tokens and runs
// the decoder chain (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence).
//
// Supported components (anything else is a UserError naming it and its JSON path):
//   normalizers     NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, StripAccents, Sequence
//   pre_tokenizers  ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, Sequence
//   model           BPE (dropout is ignored: encoding is deterministic); LlamaCppSpm, vktune's own
//                   for GGUF SentencePiece vocabularies (scores instead of merges: engine/text/spm.cpp)
//   post_processor  TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence
//   decoder         ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence
// Regexes run on PCRE2 (Unicode properties on) instead of HF's Oniguruma; the two agree on the
// patterns these tokenizers use once \s is given Oniguruma's meaning (engine/text/regex.hpp).
// The components live in their own files: normalizer, pre_tokenizer, bpe, added_tokens,
// post_processor, decoder (on unicode, byte_level, regex, pattern and json_node).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace vkt::text {

struct StreamedBpeTables;

class Tokenizer {
 public:
  // Reads <path>/tokenizer.json when given a directory, else the file; a tokenizer_config.json
  // next to it, when present, names the bos/eos tokens ("bos_token", "eos_token"), and for
  // tokenizer_class LlamaTokenizer(Fast)/CodeLlama/Gemma its add_bos_token (default true) and
  // add_eos_token (default false) replace the post-processor, as transformers does on load.
  static Tokenizer load(const std::filesystem::path& path);
  // From parsed documents; `where` names tokenizer.json in errors. `tokenizer_config` may be null.
  static Tokenizer from_json(const nlohmann::json& tokenizer, const std::string& where,
                             const nlohmann::json& tokenizer_config = nullptr);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // UTF-8 text -> ids. add_special_tokens runs the post-processor's template (e.g. BOS first).
  // UserError when the text is not valid UTF-8. A character the model cannot encode (no byte
  // fallback, no unk token; never the case for byte-level BPE) is dropped with a warning, as HF
  // does. Thread-safe (a mutex guards the word cache).
  std::vector<uint32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // ids -> text. Ids the tokenizer does not know are skipped (as HF does); bytes that do not form
  // valid UTF-8 become U+FFFD.
  std::string decode(std::span<const uint32_t> ids, bool skip_special_tokens = false) const;

  std::optional<uint32_t> token_to_id(std::string_view token) const;  // added tokens first, then the model
  std::optional<std::string> id_to_token(uint32_t id) const;
  bool is_special(uint32_t id) const;  // an added token marked "special"

  // BOS: tokenizer_config.json's bos_token, else the special token the post-processor puts before
  // the text, else a well-known name (<s>, <|begin_of_text|>, ...). EOS likewise from eos_token or
  // a well-known name (</s>, <|end_of_text|>, <|endoftext|>, <|im_end|> ...).
  std::optional<uint32_t> bos_id() const;
  std::optional<uint32_t> eos_id() const;
  // Whether encode(text, true) starts with bos_id(): the post-processor's template puts BOS first.
  bool adds_bos() const;
  // Whether encode(text, true) ends with eos_id() (rare: add_eos_token in a Llama tokenizer_config).
  bool adds_eos() const;
  // Number of ids: largest id of the model vocabulary and the added tokens, plus one (the rows an
  // embedding table needs at least; config.json's vocab_size may be larger, padded).
  size_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  // from_json, with model.vocab/merges from `streamed` when not null (load()'s fast path).
  static Tokenizer build(const nlohmann::json& tokenizer, const std::string& where,
                         const nlohmann::json& tokenizer_config, const StreamedBpeTables* streamed);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vkt::text
