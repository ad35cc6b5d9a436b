#pragma once
// Writing a model folder the way transformers' save_pretrained does, shared by `vktune merge`,
// `export` and `quantize`: config.json, model.safetensors (sharded above a size, with
// model.safetensors.index.json), and the tokenizer files copied from a source model. Every file
// is written atomically (temporary file + rename).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/config.hpp"
#include "engine/model/safetensors.hpp"

namespace vkt::merge {

constexpr uint64_t default_max_shard_bytes = 5'000'000'000ull;  // save_pretrained's "5GB"

// fp32 values to `dtype` bytes, written in pieces so no full-size byte copy is made.
void write_as(model::TensorSink& sink, const float* values, uint64_t count, model::FileDtype dtype);

// The output config.json: the source's document with num_hidden_layers set, torch_dtype set to
// `torch_dtype`, and quantization_config removed (a merged or exported model is dense) unless
// `quantization_config` is given (then it replaces it). Validated by parsing it back.
nlohmann::json output_config(const model::ModelConfig& source, int64_t layers, const std::string& torch_dtype,
                             const nlohmann::json& quantization_config = nullptr);
void write_config(const std::filesystem::path& directory, const nlohmann::json& config);

// Copies the tokenizer files that exist in `from` (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, tokenizer.model, vocab.json, merges.txt, added_tokens.json,
// generation_config.json, chat_template.jinja) into `to`. Returns the names copied.
std::vector<std::string> copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace vkt::merge
