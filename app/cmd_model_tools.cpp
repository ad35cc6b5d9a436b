// `vktune tokenizer-train`: a byte-level BPE tokenizer.json from text.
// `vktune new-model`: a freshly initialised HF model folder to pretrain (`vktune train --method full`).
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/log.hpp"
#include "engine/model/init.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/text/trainer.hpp"

namespace vkt::app {

namespace {
// Text documents from a .txt (one per line) or a .jsonl ({"text": ...} per line).
std::vector<std::string> read_documents(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError("cannot read " + path, "check --data");
  bool jsonl = path.size() > 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  std::vector<std::string> documents;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    number++;
    if (line.empty()) continue;
    if (!jsonl) {
      documents.push_back(line + "\n");
      continue;
    }
    try {
      auto object = nlohmann::json::parse(line);
      documents.push_back(object.at("text").get<std::string>());
    } catch (const nlohmann::json::exception& error) {
      throw UserError(path + ":" + std::to_string(number) + ": expected {\"text\": ...} (" + error.what() + ")",
                      "one JSON object with a \"text\" field per line");
    }
  }
  if (documents.empty()) throw UserError(path + " has no text", "give a non-empty corpus");
  return documents;
}
}  // namespace

void add_model_tool_commands(CLI::App& app) {
  auto* tokenizer =
      app.add_subcommand("tokenizer-train", "Train a byte-level BPE tokenizer (HF tokenizer.json) on text");
  static std::string data, output;
  static uint32_t vocab_size = 4096;
  tokenizer->add_option("--data", data, "corpus: .txt (a document per line) or .jsonl ({\"text\"})")->required();
  tokenizer->add_option("--vocab-size", vocab_size, "tokens in total: 256 bytes + merges + 3 special tokens");
  tokenizer->add_option("--output", output, "folder for tokenizer.json and tokenizer_config.json")->required();
  tokenizer->callback([] {
    auto documents = read_documents(data);
    text::TokenizerTrainOptions options;
    options.vocab_size = vocab_size;
    log::info("training a " + std::to_string(vocab_size) + "-token BPE on " + std::to_string(documents.size()) +
              " documents");
    text::TrainedTokenizer trained = text::train_bpe_tokenizer(documents, options);
    std::filesystem::create_directories(output);
    write_file_atomically(std::filesystem::path(output) / "tokenizer.json", trained.tokenizer_json + "\n");
    write_file_atomically(std::filesystem::path(output) / "tokenizer_config.json",
                          trained.tokenizer_config_json + "\n");
    // Compression on the corpus, as a sanity figure.
    text::Tokenizer loaded = text::Tokenizer::load(output);
    uint64_t bytes = 0, tokens = 0;
    for (size_t i = 0; i < documents.size(); i += std::max<size_t>(1, documents.size() / 2000)) {
      bytes += documents[i].size();
      tokens += loaded.encode(documents[i], false).size();
    }
    std::printf("tokenizer: %u tokens, %.2f bytes per token on a sample of the corpus -> %s\n", trained.vocab_size,
                double(bytes) / double(std::max<uint64_t>(1, tokens)), output.c_str());
  });

  auto* create =
      app.add_subcommand("new-model", "Write a freshly initialised Llama model folder (HF layout) to pretrain");
  static std::string config_path, tokenizer_dir, model_output;
  static uint64_t seed = 0;
  create->add_option("--config", config_path, "config.json with the shape (hidden_size, num_hidden_layers, ...)")
      ->required();
  create->add_option("--tokenizer", tokenizer_dir, "folder with tokenizer.json (vktune tokenizer-train)")->required();
  create->add_option("--output", model_output, "the new model folder")->required();
  create->add_option("--seed", seed, "initialisation seed");
  create->callback([] {
    model::ModelConfig config = model::load_model_config(config_path);
    text::TrainedTokenizer tokenizer;
    tokenizer.tokenizer_json = read_text_file(std::filesystem::path(tokenizer_dir) / "tokenizer.json");
    tokenizer.tokenizer_config_json = read_text_file(std::filesystem::path(tokenizer_dir) / "tokenizer_config.json");
    text::Tokenizer loaded = text::Tokenizer::load(tokenizer_dir);
    tokenizer.vocab_size = static_cast<uint32_t>(loaded.vocab_size());
    tokenizer.bos_id = loaded.bos_id().value_or(0);
    tokenizer.eos_id = loaded.eos_id().value_or(0);
    tokenizer.pad_id = loaded.token_to_id("<|pad|>").value_or(tokenizer.eos_id);
    model::NewModelOptions options;
    options.seed = seed;
    model::write_new_model(model_output, config, tokenizer, options);
    std::printf("new model: %s\n", model_output.c_str());
  });
}

}  // namespace vkt::app
