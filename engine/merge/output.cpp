#include "engine/merge/output.hpp"

#include <algorithm>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;

void write_as(model::TensorSink& sink, const float* values, uint64_t count, model::FileDtype dtype) {
  if (dtype == model::FileDtype::F32) {
    sink.write(values, count * 4);
    return;
  }
  constexpr uint64_t piece = 1 << 16;
  const uint32_t size = model::file_dtype_size(dtype);
  std::vector<uint8_t> bytes(std::min(count, piece) * size);
  for (uint64_t first = 0; first < count; first += piece) {
    uint64_t n = std::min(piece, count - first);
    model::convert_from_fp32(std::span<const float>(values + first, n), dtype,
                             std::span<uint8_t>(bytes.data(), n * size));
    sink.write(bytes.data(), n * size);
  }
}

nlohmann::json output_config(const model::ModelConfig& source, int64_t layers, const std::string& torch_dtype,
                             const nlohmann::json& quantization_config) {
  nlohmann::json document = source.original.is_object() ? source.original : model::to_json(source);
  const int64_t source_layers = source.num_hidden_layers;
  document["num_hidden_layers"] = layers;
  if (document.contains("dtype")) document["dtype"] = torch_dtype;  // transformers 5 spelling
  document["torch_dtype"] = torch_dtype;
  document.erase("quantization_config");
  if (!quantization_config.is_null()) document["quantization_config"] = quantization_config;
  // Per-layer lists (transformers' layer_types) follow the layer count: a merge that changes the
  // depth gives every new layer the first layer's type (all of them are full attention for the
  // architectures vktune reads unless sliding windows are configured, which it rejects below).
  if (document.contains("layer_types") && document["layer_types"].is_array() && layers != source_layers) {
    nlohmann::json types = nlohmann::json::array();
    for (int64_t i = 0; i < layers; i++)
      types.push_back(document["layer_types"].empty() ? "full_attention" : document["layer_types"][0]);
    if (std::any_of(document["layer_types"].begin(), document["layer_types"].end(),
                    [&](const nlohmann::json& t) { return t != document["layer_types"][0]; }))
      throw UserError("the base config's layer_types differ between layers; a depth-changing merge cannot keep them",
                      "merge models whose layers are all of one type");
    document["layer_types"] = types;
  }
  if (document.contains("max_window_layers") && document["max_window_layers"].is_number() && layers != source_layers &&
      document.value("use_sliding_window", false))
    throw UserError("the base config uses sliding-window attention per layer (max_window_layers)",
                    "depth-changing merges of such models are not supported");
  model::parse_model_config(document, "the merged config.json");  // still a config vktune and transformers read
  return document;
}

void write_config(const fs::path& directory, const nlohmann::json& config) {
  write_file_atomically(directory / "config.json", config.dump(2) + "\n");
}

std::vector<std::string> copy_tokenizer_files(const fs::path& from, const fs::path& to) {
  static const char* const names[] = {
      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",    "vocab.json",
      "merges.txt",     "added_tokens.json",     "generation_config.json",  "chat_template.jinja"};
  std::vector<std::string> copied;
  fs::create_directories(to);
  for (const char* name : names) {
    fs::path source = from / name;
    if (!fs::exists(source)) continue;
    std::string contents = read_text_file(source);  // small files; binary-safe (std::string holds any bytes)
    write_file_atomically(to / name, contents);
    copied.push_back(name);
  }
  return copied;
}

}  // namespace vkt::merge
