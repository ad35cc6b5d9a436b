#include "engine/text/tokenizer.hpp"

#include <algorithm>
#include <unordered_map>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/text/added_tokens.hpp"
#include "engine/text/bpe.hpp"
#include "engine/text/decoder.hpp"
#include "engine/text/json_node.hpp"
#include "engine/text/normalizer.hpp"
#include "engine/text/post_processor.hpp"
#include "engine/text/pre_tokenizer.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::text {
namespace fs = std::filesystem;
using nlohmann::json;

struct Tokenizer::Impl {
  std::string where;
  std::unique_ptr<BpeModel> model;
  Normalizer normalizer;                        // empty when none
  std::vector<PreTokenizerStep> pre_tokenizer;  // none: the model sees each normalized piece whole
  PostProcessor post_processor;                 // empty when none
  Decoder decoder;                              // empty when none: tokens are joined with spaces
  std::vector<AddedToken> added;                // in file order
  std::unordered_map<std::string, size_t> added_by_content;
  std::unordered_map<uint32_t, size_t> added_by_id;
  TokenMatcher raw_matcher;         // added tokens with normalized = false: matched in the raw text
  TokenMatcher normalized_matcher;  // normalized = true: matched in the normalized text
  std::optional<uint32_t> bos, eos;
  std::vector<uint32_t> leading_ids;   // what the post-processor puts before the text
  std::vector<uint32_t> trailing_ids;  // and after it
  size_t id_count = 0;

  // Step k of the pre-tokenizer; the sink after the last step runs the model.
  struct StepSink final : PieceSink {
    const Impl* impl = nullptr;
    size_t step = 0;
    StepSink* next = nullptr;
    std::vector<uint32_t>* ids = nullptr;
    void take(Piece&& piece) override {
      if (piece.id) {
        ids->push_back(*piece.id);
      } else if (!piece.text.empty()) {
        if (step == impl->pre_tokenizer.size())
          impl->model->tokenize(piece.text, *ids);
        else
          impl->pre_tokenizer[step](std::move(piece), *next);
      }
    }
  };

  std::vector<uint32_t> encode(std::string_view text, bool add_special_tokens) const {
    size_t invalid = first_invalid_utf8(text);
    if (invalid != std::string_view::npos)
      throw UserError("text to tokenize is not valid UTF-8 (at byte " + std::to_string(invalid) + ")",
                      "re-encode the data set as UTF-8");
    std::vector<uint32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<StepSink> sinks(pre_tokenizer.size() + 1);
    for (size_t step = 0; step < sinks.size(); step++) {
      sinks[step].impl = this;
      sinks[step].step = step;
      sinks[step].next = step + 1 < sinks.size() ? &sinks[step + 1] : nullptr;
      sinks[step].ids = &ids;
    }
    // 1. Added tokens that are not normalized are cut out of the raw text; 2. each other piece is
    // normalized and the normalized added tokens are cut out of it; 3. pre-tokenizer and model.
    for (auto& piece : split_added_tokens(Piece{std::string(text), true, std::nullopt}, raw_matcher, added)) {
      if (piece.id) {
        ids.push_back(*piece.id);
        continue;
      }
      if (normalizer) normalizer(piece.text);
      for (auto& part : split_added_tokens(std::move(piece), normalized_matcher, added)) sinks[0].take(std::move(part));
    }
    if (add_special_tokens && post_processor) ids = post_processor(std::move(ids));
    return ids;
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

// tokenizer_config.json names a token either as a string or as {"content": "...", ...}.
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& value = config[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string())
    return value["content"].get<std::string>();
  return std::nullopt;
}

// Whether some component of tokenizer.json is ByteLevel (as transformers' _tokenizer_json_has_byte_level
// asks; it searches the whole file for "ByteLevel", we search the components where it can appear).
bool uses_byte_level(const json& node) {
  if (node.is_object()) {
    if (auto type = node.find("type"); type != node.end() && *type == "ByteLevel") return true;
    for (const auto& [key, child] : node.items())
      if (uses_byte_level(child)) return true;
  } else if (node.is_array()) {
    for (const auto& child : node)
      if (uses_byte_level(child)) return true;
  }
  return false;
}

}  // namespace

Tokenizer Tokenizer::from_json(const json& document, const std::string& where, const json& tokenizer_config) {
  return build(document, where, tokenizer_config, nullptr);
}

Tokenizer Tokenizer::build(const json& document, const std::string& where, const json& tokenizer_config,
                           const StreamedBpeTables* streamed) {
  auto impl = std::make_unique<Impl>();
  impl->where = where;
  JsonNode root(document, "", impl->where);
  if (!document.is_object()) root.fail("tokenizer.json must be a JSON object");
  if (root.has("version") && root.at("version").string() != "1.0")
    root.at("version").fail("unknown tokenizer.json version \"" + root.at("version").string() +
                            "\" (expected \"1.0\")");

  impl->model = parse_bpe_model(root.at("model"), streamed);
  if (auto node = root.get("normalizer")) impl->normalizer = parse_normalizer(*node);
  if (auto node = root.get("pre_tokenizer")) parse_pre_tokenizer(*node, impl->pre_tokenizer);
  if (auto node = root.get("post_processor")) impl->post_processor = parse_post_processor(*node);
  if (auto node = root.get("decoder")) impl->decoder = parse_decoder(*node);

  // Added tokens, with ids assigned as HF's AddedVocabulary::add_tokens does: a token already in
  // the vocabulary keeps that id; a new one gets the next id after the model's vocabulary.
  BpeModel& model = *impl->model;
  std::optional<uint32_t> max_added_id;
  if (auto list = root.get("added_tokens")) {
    for (size_t i = 0; i < list->size(); i++) {
      JsonNode entry = (*list)[i];
      AddedToken token;
      token.content = entry.at("content").string();
      if (token.content.empty()) continue;  // HF ignores empty added tokens
      token.special = entry.boolean_or("special", false);
      token.lstrip = entry.boolean_or("lstrip", false);
      token.rstrip = entry.boolean_or("rstrip", false);
      token.single_word = entry.boolean_or("single_word", false);
      token.normalized = entry.boolean_or("normalized", !token.special);
      std::optional<uint32_t> existing;
      if (auto found = impl->added_by_content.find(token.content); found != impl->added_by_content.end())
        existing = impl->added[found->second].id;
      else
        existing = model.vocab.find(token.content);
      if (existing) {
        token.id = *existing;
      } else {
        const uint32_t model_size = static_cast<uint32_t>(model.vocab.size());
        token.id = !max_added_id ? model_size
                                 : (*max_added_id >= model_size || model_size == 0 ? *max_added_id + 1 : model_size);
      }
      if (entry.has("id") && entry.at("id").id() != token.id)
        log::warn(where + ": added_tokens[" + std::to_string(i) + "] \"" + token.content + "\" is listed with id " +
                  std::to_string(entry.at("id").id()) + " but gets id " + std::to_string(token.id) +
                  " (as Hugging Face tokenizers assigns it)");
      max_added_id = std::max(max_added_id.value_or(0), token.id);
      token.decoded = token.content;
      if (token.normalized && impl->normalizer) impl->normalizer(token.decoded);
      size_t index = impl->added.size();
      impl->added_by_content[token.content] = index;
      impl->added_by_id[token.id] = index;
      impl->added.push_back(std::move(token));
    }
  }
  for (size_t index = 0; index < impl->added.size(); index++) {
    const AddedToken& token = impl->added[index];
    if (impl->added_by_id[token.id] != index) continue;  // superseded by a later entry with the same id
    if (token.normalized)
      impl->normalized_matcher.add(token.decoded, index);
    else
      impl->raw_matcher.add(token.content, index);
  }
  impl->id_count = model.vocab.empty() ? 0 : size_t{model.vocab.max_id()} + 1;
  if (max_added_id) impl->id_count = std::max<size_t>(impl->id_count, *max_added_id + 1);

  Tokenizer tokenizer(std::move(impl));
  Impl& self = *tokenizer.impl_;
  auto lookup = [&](const std::string& name) { return tokenizer.token_to_id(name); };
  std::optional<uint32_t> configured_bos, configured_eos;
  if (auto name = config_token(tokenizer_config, "bos_token")) configured_bos = lookup(*name);
  if (auto name = config_token(tokenizer_config, "eos_token")) configured_eos = lookup(*name);

  // transformers' LlamaTokenizerFast (and CodeLlama's, Gemma's) rebuild the post-processor from
  // tokenizer_config.json's add_bos_token (default true) / add_eos_token (default false) when they
  // load, whatever tokenizer.json says: single = [bos] $A [eos]. Not when tokenizer.json is
  // byte-level (DeepSeek-V3 says LlamaTokenizerFast): transformers then loads it as it is.
  std::string tokenizer_class;
  if (tokenizer_config.is_object() && tokenizer_config.contains("tokenizer_class") &&
      tokenizer_config["tokenizer_class"].is_string())
    tokenizer_class = tokenizer_config["tokenizer_class"].get<std::string>();
  for (const char* component : {"normalizer", "pre_tokenizer", "post_processor", "decoder"})
    if (document.contains(component) && uses_byte_level(document[component])) tokenizer_class.clear();
  for (const char* llama_like : {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast",
                                 "GemmaTokenizer", "GemmaTokenizerFast"}) {
    if (tokenizer_class != llama_like) continue;
    auto flag = [&](const char* key, bool fallback) {
      return tokenizer_config.contains(key) && tokenizer_config[key].is_boolean() ? tokenizer_config[key].get<bool>()
                                                                                  : fallback;
    };
    bool add_bos = flag("add_bos_token", true), add_eos = flag("add_eos_token", false);
    if ((add_bos && !configured_bos) || (add_eos && !configured_eos))
      throw UserError(where +
                          ": tokenizer_config.json asks for add_bos_token/add_eos_token but its bos_token/eos_token "
                          "is missing or not in the vocabulary",
                      "set bos_token and eos_token in tokenizer_config.json");
    std::vector<uint32_t> before, after;
    if (add_bos) before.push_back(*configured_bos);
    if (add_eos) after.push_back(*configured_eos);
    self.post_processor = [before, after](std::vector<uint32_t> ids) {
      ids.insert(ids.begin(), before.begin(), before.end());
      ids.insert(ids.end(), after.begin(), after.end());
      return ids;
    };
  }

  // What the post-processor puts before and after the text: run it on a marker sequence.
  if (self.post_processor) {
    const uint32_t marker = 0xffffffffu;
    std::vector<uint32_t> wrapped = self.post_processor({marker});
    auto at = std::find(wrapped.begin(), wrapped.end(), marker);
    self.leading_ids.assign(wrapped.begin(), at);
    if (at != wrapped.end()) self.trailing_ids.assign(at + 1, wrapped.end());
  }
  self.bos = configured_bos;
  if (!self.bos && !self.leading_ids.empty()) self.bos = self.leading_ids.front();
  for (const char* name : {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"})
    if (!self.bos) self.bos = lookup(name);
  self.eos = configured_eos;
  for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"})
    if (!self.eos) self.eos = lookup(name);
  return tokenizer;
}

Tokenizer Tokenizer::load(const fs::path& path) {
  fs::path file = fs::is_directory(path) ? path / "tokenizer.json" : path;
  if (!fs::exists(file))
    throw UserError("no tokenizer.json at " + file.string(),
                    "pass a Hugging Face model folder; models that ship only tokenizer.model (sentencepiece) need a "
                    "tokenizer.json, e.g. from AutoTokenizer.from_pretrained(...).save_pretrained(...)");
  json config = nullptr;
  fs::path config_file = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config_file)) {
    try {
      config = json::parse(read_text_file(config_file));
    } catch (const json::exception& error) {
      throw UserError(config_file.string() + ": not valid JSON: " + error.what(),
                      "download tokenizer_config.json again");
    }
  }
  const std::string text = read_text_file(file);
  // Fast path: the vocabulary and merges streamed into flat lists (engine/text/bpe_stream.hpp). Any
  // problem there, or in the tokenizer built from them, is reported by the ordinary path, whose
  // errors name the exact place in the file.
  try {
    StreamedBpeTables tables;
    json document = parse_streaming_bpe(text, tables);
    return build(document, file.string(), config, &tables);
  } catch (const json::exception&) {
  } catch (const NotStreamable&) {
  } catch (const UserError&) {}
  json document;
  try {
    document = json::parse(text);
  } catch (const json::exception& error) {
    throw UserError(file.string() + ": not valid JSON: " + error.what(), kTokenizerHint);
  }
  return from_json(document, file.string(), config);
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return impl_->encode(text, add_special_tokens);
}

std::string Tokenizer::decode(std::span<const uint32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (uint32_t id : ids) {
    if (auto added = impl_->added_by_id.find(id); added != impl_->added_by_id.end()) {
      const AddedToken& token = impl_->added[added->second];
      if (!(skip_special_tokens && token.special)) tokens.push_back(token.decoded);
      continue;
    }
    if (const std::string* token = impl_->model->vocab.token_of(id)) tokens.push_back(*token);
  }
  if (!impl_->decoder) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); i++) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  impl_->decoder(tokens);
  std::string joined;
  for (const auto& token : tokens) joined += token;
  return joined;
}

std::optional<uint32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto added = impl_->added_by_content.find(std::string(token)); added != impl_->added_by_content.end())
    return impl_->added[added->second].id;
  return impl_->model->vocab.find(token);
}

std::optional<std::string> Tokenizer::id_to_token(uint32_t id) const {
  if (auto added = impl_->added_by_id.find(id); added != impl_->added_by_id.end())
    return impl_->added[added->second].content;
  if (const std::string* found = impl_->model->vocab.token_of(id)) return *found;
  return std::nullopt;
}

bool Tokenizer::is_special(uint32_t id) const {
  auto added = impl_->added_by_id.find(id);
  return added != impl_->added_by_id.end() && impl_->added[added->second].special;
}

std::optional<uint32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<uint32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::adds_bos() const {
  return impl_->bos && !impl_->leading_ids.empty() && impl_->leading_ids.front() == *impl_->bos;
}
bool Tokenizer::adds_eos() const {
  return impl_->eos && !impl_->trailing_ids.empty() && impl_->trailing_ids.back() == *impl_->eos;
}
size_t Tokenizer::vocab_size() const { return impl_->id_count; }

}  // namespace vkt::text
