#include "engine/model/gguf_tokenizer.hpp"

#include <functional>

#include "engine/base/error.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/text/trainer.hpp"

namespace vkt::model {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// llama_token_type (llama.h).
constexpr int64_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

json split(const char* regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

// tokenizer.ggml.pre -> the pre_tokenizer of tokenizer.json, with the regexes of the original
// tokenizers (llama.cpp's llama-vocab.cpp quotes them; its own spellings are equivalent rewrites).
json known_pre_tokenizer(const std::string& pre) {
  if (pre == "llama-bpe" || pre == "llama3")
    return {{"type", "Sequence"},
            {"pretokenizers",
             {split("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
              byte_level(false)}}};
  if (pre == "qwen2")
    return {{"type", "Sequence"},
            {"pretokenizers",
             {split("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
              byte_level(false)}}};
  if (pre == "gpt-2" || pre == "default") return byte_level(true);
  if (pre == "smollm") return {{"type", "Sequence"}, {"pretokenizers", {split("\\p{N}"), byte_level(true)}}};
  return nullptr;
}

json pre_tokenizer_of(const GgufFile& file, const std::string& pre) {
  json known = known_pre_tokenizer(pre);
  if (!known.is_null()) return known;
  throw UserError(
      file.path().string() + ": tokenizer.ggml.pre is \"" + pre + "\", a pre-tokenizer vktune does not know",
      "known: llama-bpe, qwen2, gpt-2, smollm; or use the model's Hugging Face folder (tokenizer.json)");
}

}  // namespace

std::optional<std::string> gguf_pre_tokenizer_name(const json& tokenizer) {
  // trim_offsets changes only the offsets tokenizers report, never the ids: left out of the comparison.
  std::function<json(json)> without_offsets = [&](json document) {
    if (document.is_object()) {
      document.erase("trim_offsets");
      for (auto& [key, value] : document.items()) value = without_offsets(value);
    } else if (document.is_array()) {
      for (auto& value : document) value = without_offsets(value);
    }
    return document;
  };
  const json pre_tokenizer = without_offsets(tokenizer.value("pre_tokenizer", json()));
  for (const char* pre : {"llama-bpe", "qwen2", "gpt-2", "smollm"}) {
    const json normalizer = std::string(pre) == "qwen2" ? json{{"type", "NFC"}} : json(nullptr);
    if (pre_tokenizer == without_offsets(known_pre_tokenizer(pre)) &&
        tokenizer.value("normalizer", json()) == normalizer)
      return pre;
  }
  return std::nullopt;
}

GgufTokenizerDocuments gguf_tokenizer_documents(const GgufFile& file) {
  const std::string where = file.path().string();
  const std::string kind = file.string_or_none("tokenizer.ggml.model").value_or("none");
  if (kind == "none")
    throw UserError(where + " has no tokenizer (tokenizer.ggml.model is " +
                        (file.contains("tokenizer.ggml.model") ? "\"none\"" : "absent") + ")",
                    "convert the model with its tokenizer (convert_hf_to_gguf.py reads tokenizer.json)");
  if (kind != "gpt2")
    throw UserError(where + ": tokenizer.ggml.model is \"" + kind +
                        "\"; vktune reads GGUF tokenizers of kind gpt2 "
                        "(byte-level BPE) only so far",
                    "use the model's Hugging Face folder for its tokenizer.json");
  const std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), kNormal);
  if (file.contains("tokenizer.ggml.token_type")) types = file.get_int_array("tokenizer.ggml.token_type");
  if (types.size() != tokens.size())
    throw UserError(where + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                        std::to_string(tokens.size()) + " tokens",
                    "the file is damaged; convert the model again");
  const std::string pre = file.string_or_none("tokenizer.ggml.pre").value_or("default");

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  json added = json::array();
  for (size_t id = 0; id < tokens.size(); id++) {
    const int64_t type = types[id];
    if (type == kControl || type == kUserDefined)
      added.push_back({{"id", id},
                       {"content", tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == kControl}});
    else if (type == kNormal || type == kByte || type == kUnknown)
      vocab[tokens[id]] = id;
    else if (type != kUnused)
      throw UserError(where + ": tokenizer.ggml.token_type[" + std::to_string(id) + "] is " + std::to_string(type) +
                          ", not a llama_token_type",
                      "the file is damaged; convert the model again");
  }
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  if (file.contains("tokenizer.ggml.merges")) merges = file.get_string_array("tokenizer.ggml.merges");
  GgufTokenizerDocuments out;
  out.tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", pre == "qwen2" ? json{{"type", "NFC"}} : json(nullptr)},
      {"pre_tokenizer", pre_tokenizer_of(file, pre)},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      // llama.cpp sets ignore_merges for the Llama 3 pre-tokenizer, as Llama 3's tokenizer.json does.
      {"model",
       json(text::bpe_model_json(std::move(vocab), std::move(merges), pre == "llama-bpe" || pre == "llama3"))}};
  auto token_of = [&](const char* key) -> std::optional<std::pair<uint64_t, std::string>> {
    auto id = file.uint_or_none(key);
    if (!id) return std::nullopt;
    if (*id >= tokens.size())
      throw UserError(
          where + ": " + key + " is " + std::to_string(*id) + ", past the " + std::to_string(tokens.size()) + " tokens",
          "the file is damaged; convert the model again");
    return std::make_pair(*id, tokens[*id]);
  };
  const auto bos = token_of("tokenizer.ggml.bos_token_id"), eos = token_of("tokenizer.ggml.eos_token_id");
  const bool add_bos = file.contains("tokenizer.ggml.add_bos_token") && file.get_bool("tokenizer.ggml.add_bos_token");
  const bool add_eos = file.contains("tokenizer.ggml.add_eos_token") && file.get_bool("tokenizer.ggml.add_eos_token");
  if ((add_bos && bos) || (add_eos && eos)) {
    // llama.cpp puts BOS before / EOS after the text: a TemplateProcessing post-processor does the same.
    json single = json::array(), special = json::object();
    auto special_token = [&](const std::pair<uint64_t, std::string>& token) {
      special[token.second] = {{"id", token.second}, {"ids", {token.first}}, {"tokens", {token.second}}};
      return json{{"SpecialToken", {{"id", token.second}, {"type_id", 0}}}};
    };
    if (add_bos && bos) single.push_back(special_token(*bos));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (add_eos && eos) single.push_back(special_token(*eos));
    out.tokenizer["post_processor"] = {
        {"type", "TemplateProcessing"}, {"single", single}, {"pair", single}, {"special_tokens", special}};
  }
  out.tokenizer_config = json::object();
  if (bos) out.tokenizer_config["bos_token"] = bos->second;
  if (eos) out.tokenizer_config["eos_token"] = eos->second;
  if (auto chat = file.string_or_none("tokenizer.chat_template")) out.tokenizer_config["chat_template"] = *chat;
  return out;
}

text::Tokenizer load_model_tokenizer(const fs::path& model) {
  if (!is_gguf_file(model)) return text::Tokenizer::load(model);
  GgufFile file(model);
  GgufTokenizerDocuments documents = gguf_tokenizer_documents(file);
  return text::Tokenizer::from_json(documents.tokenizer, model.string() + " (GGUF tokenizer)",
                                    documents.tokenizer_config);
}

text::ChatFormat load_model_chat_format(const fs::path& model) {
  if (!is_gguf_file(model)) return text::load_chat_format(model);
  GgufFile file(model);
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
  for (const char* key : {"bos", "eos"})
    if (auto id = file.uint_or_none(std::string("tokenizer.ggml.") + key + "_token_id")) {
      const std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
      if (*id < tokens.size()) special_tokens[std::string(key) + "_token"] = tokens[*id];
    }
  if (auto chat = file.string_or_none("tokenizer.chat_template"))
    return text::parse_chat_format(*chat, model.string() + " tokenizer.chat_template", special_tokens);
  text::ChatFormat format;
  format.source = "built-in ChatML template";
  format.special_tokens = std::move(special_tokens);
  return format;
}

std::string tokenizer_location(const std::filesystem::path& model) {
  return (is_gguf_file(model) ? model : model / "tokenizer.json").string();
}

}  // namespace vkt::model
