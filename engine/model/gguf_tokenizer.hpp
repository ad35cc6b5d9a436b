#pragma once
// The tokenizer of a model: a folder's tokenizer.json (engine/text), or a GGUF file's
// tokenizer.ggml.* metadata turned into the equivalent tokenizer.json / tokenizer_config.json
// documents (so one tokenizer implementation serves both).
//
// GGUF tokenizers read: tokenizer.ggml.model "gpt2" (byte-level BPE: tokens, merges, token_type;
// CONTROL tokens become special added tokens, USER_DEFINED ones plain added tokens, UNUSED ones are
// dropped), with tokenizer.ggml.pre naming the pre-tokenizer regex as llama.cpp's llama-vocab.cpp
// does ("llama-bpe", "qwen2", "gpt-2", "smollm"); bos/eos/padding ids, add_bos_token/add_eos_token;
// tokenizer.chat_template. tokenizer.ggml.model "llama" (SentencePiece: tokens, scores, token_type
// with <0xNN> byte tokens, add_space_prefix, add_bos default true) runs as llama.cpp runs it: the
// LlamaCppSpm model of engine/text/spm.cpp, control/user-defined/unknown tokens cut out first.
// Both kinds follow llama.cpp, not the tokenizer.json they came from, where the two differ: no NFC
// for qwen2, control-looking texts (<|endoftext|>, FIM markers...) are control tokens, a Phi-3
// general.name gives special tokens rstrip (tests against libllama: gguf_spm_tokenizer_golden.py).
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/model/gguf.hpp"
#include "engine/text/chat_template.hpp"
#include "engine/text/tokenizer.hpp"

namespace vkt::model {

struct GgufTokenizerDocuments {
  nlohmann::json tokenizer;         // tokenizer.json
  nlohmann::json tokenizer_config;  // tokenizer_config.json (bos/eos names, chat_template)
};
// UserError naming the file and key when the tokenizer is absent or of a kind vktune does not read.
GgufTokenizerDocuments gguf_tokenizer_documents(const GgufFile& file);

// The tokenizer.ggml.pre name whose pre-tokenizer (and normalizer) a tokenizer.json document has, as
// the reader above maps them; nullopt for one it does not know (the GGUF exporter refuses it).
std::optional<std::string> gguf_pre_tokenizer_name(const nlohmann::json& tokenizer);

// The tokenizer / chat template of `model`: a .gguf file, else what text::Tokenizer::load and
// text::load_chat_format read (a folder).
text::Tokenizer load_model_tokenizer(const std::filesystem::path& model);
text::ChatFormat load_model_chat_format(const std::filesystem::path& model);
// Where that tokenizer comes from, for messages: the .gguf file, else <folder>/tokenizer.json.
std::string tokenizer_location(const std::filesystem::path& model);

}  // namespace vkt::model
