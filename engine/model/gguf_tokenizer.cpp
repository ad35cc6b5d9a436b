#include "engine/model/gguf_tokenizer.hpp"

#include <algorithm>
#include <cctype>
#include <functional>
#include <set>

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

// llama.cpp's "auto-detect special tokens by text" (llama_vocab::impl::load): tokens with these texts
// become control tokens whatever their type -- end-of-generation, end-of-turn, end-of-message and
// fill-in-the-middle markers. (For the end-of-turn and fill-in-the-middle roles llama.cpp marks only
// the first candidate it meets when the metadata names none; vktune marks every candidate.)
bool control_by_text(const std::string& token) {
  static const std::set<std::string> kTexts = {"</s>",
                                               "<EOT>",
                                               "<MID>",
                                               "<PAD>",
                                               "<PRE>",
                                               "<REPO>",
                                               "<SUF>",
                                               "<end_of_turn>",
                                               "<end_of_utterance>",
                                               "<eos>",
                                               "<fim-middle>",
                                               "<fim-pad>",
                                               "<fim-prefix>",
                                               "<fim-repo>",
                                               "<fim-suffix>",
                                               "<fim_middle>",
                                               "<fim_pad>",
                                               "<fim_prefix>",
                                               "<fim_suffix>",
                                               "<reponame>",
                                               "<turn|>",
                                               "<|calls|>",
                                               "<|call|>",
                                               "<|code_middle|>",
                                               "<|code_prefix|>",
                                               "<|code_suffix|>",
                                               "<|end_of_text|>",
                                               "<|endoftext|>",
                                               "<|end|>",
                                               "<|eom_id|>",
                                               "<|eot_id|>",
                                               "<|file_sep|>",
                                               "<|fim_middle|>",
                                               "<|fim_pad|>",
                                               "<|fim_prefix|>",
                                               "<|fim_repo|>",
                                               "<|fim_suffix|>",
                                               "<|flush|>",
                                               "<|im_end|>",
                                               "<|middle|>",
                                               "<|prefix|>",
                                               "<|repo_name|>",
                                               "<|return|>",
                                               "<|suffix|>",
                                               "<|tool_response>",
                                               "<\uff5cend\u2581of\u2581sentence\uff5c>",
                                               "<\uff5cfim\u2581begin\uff5c>",
                                               "<\uff5cfim\u2581end\uff5c>",
                                               "<\uff5cfim\u2581hole\uff5c>",
                                               "[EOS]",
                                               "[EOT]",
                                               "[PAD]",
                                               "[e~[",
                                               "_<EOT>",
                                               "\u2581<MID>",
                                               "\u2581<PRE>",
                                               "\u2581<SUF>"};
  return kTexts.count(token) != 0;
}

// The tokenizer.json of a SentencePiece vocabulary run as llama.cpp runs it (llama-vocab.cpp, type
// SPM): a space before the text and after each special token (tokenizer.ggml.add_space_prefix,
// default true), spaces as U+2581, the LlamaCppSpm model (engine/text/spm.cpp) with
// tokenizer.ggml.scores; decoding as token_to_piece + detokenize (U+2581 back to spaces, byte
// tokens, the prefix space removed). Added tokens and the post-processor are filled by the caller.
json spm_tokenizer(const GgufFile& file, nlohmann::ordered_json vocab, size_t token_count) {
  const bool space_prefix =
      !file.contains("tokenizer.ggml.add_space_prefix") || file.get_bool("tokenizer.ggml.add_space_prefix");
  std::vector<double> scores(token_count, 0.0);  // llama.cpp: 0 without the key
  if (file.contains("tokenizer.ggml.scores")) scores = file.get_float_array("tokenizer.ggml.scores");
  if (scores.size() != token_count)
    throw UserError(file.path().string() + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) +
                        " entries for " + std::to_string(token_count) + " tokens",
                    "the file is damaged; convert the model again");
  const json to_metaspace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}};
  const json to_space = {{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}};
  json decoders = {to_space, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}};
  if (space_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  nlohmann::ordered_json model = nlohmann::ordered_json::object();
  model["type"] = "LlamaCppSpm";
  model["vocab"] = std::move(vocab);
  model["scores"] = scores;
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"normalizer", space_prefix ? json{{"type", "Sequence"},
                                         {"normalizers", {{{"type", "Prepend"}, {"prepend", "\u2581"}}, to_metaspace}}}
                                  : to_metaspace},
      {"pre_tokenizer", nullptr},
      {"post_processor", nullptr},
      {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
      {"model", json(model)}};
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
  if (kind != "gpt2" && kind != "llama")
    throw UserError(where + ": tokenizer.ggml.model is \"" + kind +
                        "\"; vktune reads GGUF tokenizers of kind gpt2 (byte-level BPE) and llama "
                        "(SentencePiece)",
                    "use the model's Hugging Face folder for its tokenizer.json");
  const bool spm = kind == "llama";
  const std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), kNormal);
  if (file.contains("tokenizer.ggml.token_type")) types = file.get_int_array("tokenizer.ggml.token_type");
  if (types.size() != tokens.size())
    throw UserError(where + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                        std::to_string(tokens.size()) + " tokens",
                    "the file is damaged; convert the model again");
  const std::string pre = file.string_or_none("tokenizer.ggml.pre").value_or("default");

  // llama.cpp (llama_vocab::impl::load) strips the whitespace after every special token but <unk>,
  // <s> and <|endoftext|> for models whose general.name says Phi-3, as Phi-3's tokenizer.json does.
  std::string name = file.string_or_none("general.name").value_or("");
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  const bool phi3_rstrip = name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos;
  auto rstrip = [&](const std::string& token) {
    return phi3_rstrip && token != "<unk>" && token != "<s>" && token != "<|endoftext|>";
  };

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  json added = json::array();
  for (size_t id = 0; id < tokens.size(); id++) {
    if (types[id] < kNormal || types[id] > kByte)
      throw UserError(where + ": tokenizer.ggml.token_type[" + std::to_string(id) + "] is " +
                          std::to_string(types[id]) + ", not a llama_token_type",
                      "the file is damaged; convert the model again");
    const int64_t type = control_by_text(tokens[id]) ? kControl : types[id];
    // SentencePiece: llama.cpp's token_to_id holds every token, so any of them can be formed from text.
    if (spm) vocab[tokens[id]] = id;
    // The tokens llama.cpp cuts out of the text first (parse_special): control and user-defined
    // ones, and SentencePiece's unknown token.
    if (type == kControl || type == kUserDefined || (spm && type == kUnknown))
      added.push_back({{"id", id},
                       {"content", tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", rstrip(tokens[id])},
                       {"normalized", false},
                       {"special", type != kUserDefined}});
    else if (!spm && (type == kNormal || type == kByte || type == kUnknown))
      vocab[tokens[id]] = id;
  }
  GgufTokenizerDocuments out;
  if (spm) {
    out.tokenizer = spm_tokenizer(file, std::move(vocab), tokens.size());
    out.tokenizer["added_tokens"] = added;
  } else {
    nlohmann::ordered_json merges = nlohmann::ordered_json::array();
    if (file.contains("tokenizer.ggml.merges")) merges = file.get_string_array("tokenizer.ggml.merges");
    out.tokenizer = {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", added},
        // No NFC for qwen2 (its tokenizer.json has one): llama.cpp normalizes nothing (6 corpus lines differ).
        {"normalizer", nullptr},
        {"pre_tokenizer", pre_tokenizer_of(file, pre)},
        {"post_processor", nullptr},
        {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
        // llama.cpp sets ignore_merges for the Llama 3 pre-tokenizer, as Llama 3's tokenizer.json does.
        {"model",
         json(text::bpe_model_json(std::move(vocab), std::move(merges), pre == "llama-bpe" || pre == "llama3"))}};
  }
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
  // llama.cpp's defaults: BOS for SentencePiece vocabularies, none for gpt2 ones.
  const bool add_bos =
      file.contains("tokenizer.ggml.add_bos_token") ? file.get_bool("tokenizer.ggml.add_bos_token") : spm;
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
