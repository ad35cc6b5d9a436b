#pragma once
// Ollama Modelfiles (https://github.com/ollama/ollama/blob/main/docs/modelfile.md) for the GGUF
// exports: `ollama create NAME -f FILE.Modelfile` imports the file beside it.
//   FROM <the model .gguf>             ADAPTER <the LoRA .gguf> (adapters only)
//   TEMPLATE  Ollama's Go template for the model's chat format: ChatML and Llama 3 templates are
//             recognised by their tokens; a model without a chat template gets "{{ .Prompt }}" (plain
//             completion); for any other template TEMPLATE is left out and Ollama reads the GGUF's
//             tokenizer.chat_template itself.
//   PARAMETER stop   the EOS token, and the end-of-turn token of a recognised chat format.
#include <filesystem>
#include <string>

#include "engine/model/gguf_writer.hpp"

namespace vkt::merge {

// "out/model.q4_k_m.gguf" -> "out/model.q4_k_m.Modelfile"
std::filesystem::path modelfile_path(const std::filesystem::path& gguf);

// The Modelfile text for a model whose tokenizer.* metadata `metadata` holds. `adapter` empty: none.
std::string ollama_modelfile(const model::GgufWriter& metadata, const std::string& from, const std::string& adapter);

}  // namespace vkt::merge
