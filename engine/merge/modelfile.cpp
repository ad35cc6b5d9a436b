#include "engine/merge/modelfile.hpp"

#include <algorithm>
#include <vector>

namespace vkt::merge {

namespace {

const model::GgufValue* find(const model::GgufWriter& metadata, const std::string& key) {
  for (const auto& [name, value] : metadata.metadata())
    if (name == key) return &value;
  return nullptr;
}

std::string token_text(const model::GgufWriter& metadata, uint64_t id) {
  const model::GgufValue* tokens = find(metadata, "tokenizer.ggml.tokens");
  if (!tokens) return "";
  const auto& list = std::get<std::vector<model::GgufValue>>(tokens->value);
  return id < list.size() ? std::get<std::string>(list[id].value) : "";
}

// A Modelfile string literal: "..." with quotes and backslashes escaped.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

constexpr const char* kChatMLTemplate =
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
constexpr const char* kLlama3Template =
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
    "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n";

}  // namespace

std::filesystem::path modelfile_path(const std::filesystem::path& gguf) {
  return gguf.parent_path() / (gguf.stem().string() + ".Modelfile");
}

std::string ollama_modelfile(const model::GgufWriter& metadata, const std::string& from, const std::string& adapter) {
  std::string out = "# Ollama Modelfile written by vktune export: ollama create NAME -f THIS_FILE\n";
  out += "FROM " + from + "\n";
  if (!adapter.empty()) out += "ADAPTER " + adapter + "\n";
  std::vector<std::string> stops;
  if (const model::GgufValue* eos = find(metadata, "tokenizer.ggml.eos_token_id")) {
    const uint64_t id = std::holds_alternative<uint64_t>(eos->value)
                            ? std::get<uint64_t>(eos->value)
                            : static_cast<uint64_t>(std::get<int64_t>(eos->value));
    const std::string text = token_text(metadata, id);
    if (!text.empty()) stops.push_back(text);
  }
  const model::GgufValue* chat = find(metadata, "tokenizer.chat_template");
  const std::string chat_template = chat ? std::get<std::string>(chat->value) : "";
  if (chat_template.empty()) {
    out += "TEMPLATE \"{{ .Prompt }}\"\n";  // no chat format: plain completion
  } else if (chat_template.find("<|im_start|>") != std::string::npos) {
    out += "TEMPLATE \"\"\"" + std::string(kChatMLTemplate) + "\"\"\"\n";
    stops.push_back("<|im_end|>");
  } else if (chat_template.find("<|start_header_id|>") != std::string::npos) {
    out += "TEMPLATE \"\"\"" + std::string(kLlama3Template) + "\"\"\"\n";
    stops.push_back("<|eot_id|>");
  } else {
    out += "# TEMPLATE left out: Ollama derives it from the GGUF's tokenizer.chat_template\n";
  }
  std::sort(stops.begin(), stops.end());
  stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
  for (const std::string& stop : stops) out += "PARAMETER stop " + quoted(stop) + "\n";
  return out;
}

}  // namespace vkt::merge
