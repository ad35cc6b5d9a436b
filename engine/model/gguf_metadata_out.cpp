#include "engine/model/gguf_metadata_out.hpp"

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/text/tokenizer.hpp"

namespace vkt::model {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// llama_token_type (llama.h).
constexpr int64_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

void copy_gguf_tokenizer(GgufWriter& writer, const fs::path& model) {
  GgufFile file(model);
  (void)gguf_tokenizer_documents(file);  // a tokenizer vktune reads, or its UserError
  for (const auto& [key, value] : file.metadata())
    if (key.rfind("tokenizer.", 0) == 0) writer.set(key, value);
}

std::string merge_text(const json& merge) {
  if (merge.is_string()) return merge.get<std::string>();
  return merge.at(0).get<std::string>() + " " + merge.at(1).get<std::string>();  // tokenizers >= 0.20: pairs
}

// The folder's Jinja chat template as text: chat_template.jinja, else tokenizer_config.json's
// chat_template (a string, or the "default" of a list of named templates).
std::optional<std::string> chat_template_text(const fs::path& model) {
  if (fs::exists(model / "chat_template.jinja")) return read_text_file(model / "chat_template.jinja");
  if (!fs::exists(model / "tokenizer_config.json")) return std::nullopt;
  const json config = json::parse(read_text_file(model / "tokenizer_config.json"), nullptr, false);
  if (config.is_discarded() || !config.is_object() || !config.contains("chat_template")) return std::nullopt;
  const json& chat = config["chat_template"];
  if (chat.is_string()) return chat.get<std::string>();
  if (chat.is_array())
    for (const json& named : chat)
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template"))
        return named["template"].get<std::string>();
  return std::nullopt;
}

// tokenizer_config.json's `key` ("pad_token"): a string or an AddedToken object's content.
std::optional<std::string> named_token(const fs::path& model, const char* key) {
  if (!fs::exists(model / "tokenizer_config.json")) return std::nullopt;
  const json config = json::parse(read_text_file(model / "tokenizer_config.json"), nullptr, false);
  if (config.is_discarded() || !config.is_object() || !config.contains(key)) return std::nullopt;
  const json& token = config[key];
  if (token.is_string()) return token.get<std::string>();
  if (token.is_object() && token.contains("content") && token["content"].is_string())
    return token["content"].get<std::string>();
  return std::nullopt;
}

// gguf-py's add_sep_token (SpecialVocab reading a TemplateProcessing post-processor, also inside a
// Sequence): present when the pair template, without the single template's leading / trailing
// special tokens, has something between A and B; true when that is the EOS token.
std::optional<bool> adds_separator(const json& document, const std::string& eos) {
  json processor = document.value("post_processor", json());
  if (processor.is_object() && processor.value("type", "") == "Sequence")
    for (const json& inner : processor.value("processors", json::array()))
      if (inner.value("type", "") == "TemplateProcessing") processor = inner;
  if (!processor.is_object() || processor.value("type", "") != "TemplateProcessing") return std::nullopt;
  auto special = [](const json& item) { return item.value("SpecialToken", json::object()).value("id", ""); };
  const json single = processor.value("single", json::array());
  json pair = processor.value("pair", json::array());
  if (single.size() < 2 || pair.size() < 2) return std::nullopt;
  const std::string first = special(single.front()), last = special(single.back());
  if (!first.empty() && special(pair.front()) == first) pair.erase(pair.begin());
  if (!last.empty() && !pair.empty() && special(pair.back()) == last) pair.erase(pair.end() - 1);
  if (pair.size() < 3) return std::nullopt;
  return last.empty() && !eos.empty() && special(pair[1]) == eos;
}

// The converter's does_token_look_special: added tokens some models leave unmarked that are control
// tokens all the same.
bool looks_special(const std::string& token) {
  auto wrapped = [&](std::string_view open, std::string_view close) {
    return token.size() >= open.size() + close.size() && token.rfind(open, 0) == 0 &&
           token.compare(token.size() - close.size(), close.size(), close) == 0;
  };
  return token == "<pad>" || token == "<mask>" || token == "<2mass>" || token == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") || wrapped("<start_of_", ">") || wrapped("<end_of_", ">") ||
         wrapped("<unused", ">");
}

}  // namespace

std::string gguf_architecture(const ModelConfig& config, const std::string& where) {
  switch (config.architecture) {
    case Architecture::llama:
    case Architecture::mistral:
      return "llama";
    case Architecture::qwen2:
      return "qwen2";
    case Architecture::qwen3:
      return "qwen3";
    default:
      throw UserError(
          where + " is a " + architecture_name(config.architecture) + ", which vktune does not write as GGUF yet",
          "GGUF export covers Llama, Mistral, Qwen2 and Qwen3; export an HF folder instead "
          "(vktune export without --format)");
  }
}

bool gguf_permutes_qk(const std::string& architecture) { return architecture == "llama"; }

void set_gguf_hyperparameters(GgufWriter& writer, const ModelConfig& config, const std::string& name,
                              uint32_t file_type) {
  const std::string arch = gguf_architecture(config, name);
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  writer.set_string("general.architecture", arch);
  writer.set_string("general.type", "model");
  writer.set_string("general.name", name);
  writer.set_uint32("general.quantization_version", 2);
  writer.set_uint32("general.file_type", file_type);
  writer.set_uint32(key("vocab_size"), static_cast<uint64_t>(config.vocab_size));
  writer.set_uint32(key("context_length"), static_cast<uint64_t>(config.max_position_embeddings));
  writer.set_uint32(key("embedding_length"), static_cast<uint64_t>(config.hidden_size));
  writer.set_uint32(key("feed_forward_length"), static_cast<uint64_t>(config.intermediate_size));
  writer.set_uint32(key("block_count"), static_cast<uint64_t>(config.num_hidden_layers));
  writer.set_uint32(key("attention.head_count"), static_cast<uint64_t>(config.num_attention_heads));
  writer.set_uint32(key("attention.head_count_kv"), static_cast<uint64_t>(config.num_key_value_heads));
  writer.set_uint32(key("attention.key_length"), static_cast<uint64_t>(config.head_dim));
  writer.set_uint32(key("attention.value_length"), static_cast<uint64_t>(config.head_dim));
  writer.set_float32(key("attention.layer_norm_rms_epsilon"), config.rms_norm_eps);
  writer.set_uint32(key("rope.dimension_count"), static_cast<uint64_t>(config.head_dim));
  writer.set_float32(key("rope.freq_base"), config.rope_theta);
  const RopeScaling& scaling = config.rope_scaling;
  if (scaling.type == "linear") {
    writer.set_string(key("rope.scaling.type"), "linear");
    writer.set_float32(key("rope.scaling.factor"), scaling.factor);
  } else if (scaling.type != "default" || !config.rope_frequency_factors.empty()) {
    throw UserError(name + ": rope_scaling \"" + scaling.type + "\" is not written to GGUF yet",
                    "GGUF export covers unscaled and linear RoPE");
  }
}

void set_gguf_tokenizer(GgufWriter& writer, const fs::path& model, const ModelConfig& config) {
  if (is_gguf_file(model)) return copy_gguf_tokenizer(writer, model);
  const fs::path path = model / "tokenizer.json";
  const json document = json::parse(read_text_file(path), nullptr, false);
  if (document.is_discarded() || !document.contains("model"))
    throw UserError(path.string() + " is not a tokenizer.json document", "copy the model's tokenizer.json");
  const json& bpe = document["model"];
  if (bpe.value("type", "") != "BPE" || !bpe.contains("vocab") || !bpe.contains("merges"))
    throw UserError(path.string() + ": model.type is \"" + bpe.value("type", "") +
                        "\"; GGUF export writes byte-level BPE tokenizers (tokenizer.ggml.model gpt2) only",
                    "SentencePiece tokenizers are not written yet");
  const auto pre = gguf_pre_tokenizer_name(document);
  if (!pre)
    throw UserError(path.string() + ": its pre_tokenizer / normalizer is none that llama.cpp names",
                    "GGUF export knows the pre-tokenizers llama-bpe (Llama 3), qwen2, gpt-2 and smollm");
  const text::Tokenizer tokenizer = text::Tokenizer::load(model);
  const uint64_t vocab = std::max<uint64_t>(static_cast<uint64_t>(config.vocab_size), tokenizer.vocab_size());
  // Ids no token uses (a padded embedding table) become "[PAD<id>]" of type UNUSED, as the converter does.
  std::vector<std::string> tokens(vocab);
  std::vector<int64_t> types(vocab, kUnused);
  for (uint64_t id = 0; id < vocab; id++) tokens[id] = "[PAD" + std::to_string(id) + "]";
  for (const auto& [token, id] : bpe["vocab"].items()) {
    const uint64_t index = id.get<uint64_t>();
    if (index >= vocab) continue;
    tokens[index] = token;
    types[index] = kNormal;
  }
  for (const json& added : document.value("added_tokens", json::array())) {
    const uint64_t index = added.at("id").get<uint64_t>();
    if (index >= vocab) continue;
    tokens[index] = added.at("content").get<std::string>();
    types[index] = added.value("special", false) || looks_special(tokens[index]) ? kControl : kUserDefined;
  }
  std::vector<std::string> merges;
  for (const json& merge : bpe["merges"]) merges.push_back(merge_text(merge));
  writer.set_string("tokenizer.ggml.model", "gpt2");
  writer.set_string("tokenizer.ggml.pre", *pre);
  writer.set_string_array("tokenizer.ggml.tokens", tokens);
  writer.set_int32_array("tokenizer.ggml.token_type", types);
  writer.set_string_array("tokenizer.ggml.merges", merges);
  // As gguf-py's SpecialVocab: the tokens tokenizer_config.json names first, then config.json's ids.
  std::optional<uint64_t> bos, eos, pad;
  if (auto id = tokenizer.bos_id())
    bos = *id;
  else if (config.bos_token_id)
    bos = static_cast<uint64_t>(*config.bos_token_id);
  if (auto id = tokenizer.eos_id())
    eos = *id;
  else if (!config.eos_token_ids.empty())
    eos = static_cast<uint64_t>(config.eos_token_ids.front());
  if (auto pad_token = named_token(model, "pad_token"); pad_token && tokenizer.token_to_id(*pad_token))
    pad = *tokenizer.token_to_id(*pad_token);
  else if (config.pad_token_id)
    pad = static_cast<uint64_t>(*config.pad_token_id);
  if (bos) writer.set_uint32("tokenizer.ggml.bos_token_id", *bos);
  if (eos) writer.set_uint32("tokenizer.ggml.eos_token_id", *eos);
  if (pad) writer.set_uint32("tokenizer.ggml.padding_token_id", *pad);
  writer.set_bool("tokenizer.ggml.add_bos_token", tokenizer.adds_bos());
  writer.set_bool("tokenizer.ggml.add_eos_token", tokenizer.adds_eos());
  if (auto add_sep = adds_separator(document, eos ? tokens[*eos] : ""))
    writer.set_bool("tokenizer.ggml.add_sep_token", *add_sep);
  if (auto chat = chat_template_text(model)) writer.set_string("tokenizer.chat_template", *chat);
}

}  // namespace vkt::model
