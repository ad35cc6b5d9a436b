// `vktune tokenize`: the ids and tokens of a text, like llama.cpp's tokenize tool. By default as
// Hugging Face's tokenizer.encode(text, add_special_tokens=False): added and special tokens written
// in the text are recognised, nothing is prepended; --add-special-tokens runs the post-processor.
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/text/chat_template.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/text/unicode.hpp"

namespace vkt::app {

namespace {

namespace fs = std::filesystem;

// A `messages` JSON array ([{"role": ..., "content": ...}, ...]) rendered through the model's own
// Jinja chat template, as transformers' apply_chat_template(messages, tokenize=False) renders it.
std::string render_messages(const std::string& messages_json, const std::string& source, const fs::path& model_dir,
                            bool add_generation_prompt) {
  nlohmann::ordered_json messages;
  try {
    messages = nlohmann::ordered_json::parse(messages_json);
  } catch (const nlohmann::json::exception& error) {
    throw UserError(source + ": --chat expects a JSON array of messages (" + error.what() + ")",
                    R"(e.g. [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])");
  }
  if (!messages.is_array())
    throw UserError(source + ": --chat expects a JSON array of messages", "wrap the messages in [...]");
  for (size_t i = 0; i < messages.size(); i++) {
    const auto& message = messages[i];
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string())
      throw UserError(source + ": messages[" + std::to_string(i) + "] must be an object with a string \"role\"",
                      "give each message a role and a content");
  }
  return text::apply_chat_template(model_dir, messages, add_generation_prompt);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "tokenize", "Print the token ids and tokens of a text (as HF tokenizer.encode(text, add_special_tokens=False))");
  struct Options {
    std::string model, tokenizer, text, file;
    bool add_special_tokens = false, chat = false, add_generation_prompt = false, json = false;
  };
  static Options o;
  auto* model = command->add_option("--model", o.model, "HF model folder (its tokenizer.json, tokenizer_config.json)");
  auto* tokenizer = command->add_option("--tokenizer", o.tokenizer,
                                        "a tokenizer.json (tokenizer_config.json next to it is read too)");
  model->excludes(tokenizer);
  auto* text = command->add_option("--text", o.text, "the text to tokenize");
  auto* file = command->add_option("--file", o.file, "read the text from this file (UTF-8, taken as it is)");
  text->excludes(file);
  command->add_flag("--add-special-tokens", o.add_special_tokens,
                    "apply the post-processor (e.g. BOS first), as add_special_tokens=True");
  command->add_flag("--chat", o.chat,
                    "the text is a JSON array of messages: render it with the model's chat template first");
  command->add_flag("--add-generation-prompt", o.add_generation_prompt,
                    "with --chat: end with the template's assistant header (add_generation_prompt=True)");
  command->add_flag("--json", o.json, "print {\"ids\": [...], \"tokens\": [...]}");
  command->callback([model, tokenizer, text, file] {
    if (model->count() + tokenizer->count() != 1)
      throw UserError("give --model DIR or --tokenizer FILE", "vktune tokenize --help");
    if (text->count() + file->count() != 1) throw UserError("give --text T or --file F", "vktune tokenize --help");
    fs::path tokenizer_path = o.model.empty() ? fs::path(o.tokenizer) : fs::path(o.model);
    text::Tokenizer loaded = text::Tokenizer::load(tokenizer_path);
    std::string source = o.file.empty() ? std::string("--text") : o.file;
    std::string input = o.file.empty() ? o.text : read_text_file(o.file);
    if (size_t bad = text::first_invalid_utf8(input); bad != std::string::npos)
      throw UserError(source + ": not valid UTF-8 at byte " + std::to_string(bad), "re-encode the text as UTF-8");
    if (o.chat) {
      fs::path model_dir = fs::is_directory(tokenizer_path) ? tokenizer_path : tokenizer_path.parent_path();
      input = render_messages(input, source, model_dir, o.add_generation_prompt);
    }
    std::vector<uint32_t> ids = loaded.encode(input, o.add_special_tokens);
    std::vector<std::string> tokens;
    for (uint32_t id : ids) tokens.push_back(loaded.id_to_token(id).value_or(""));
    if (o.json) {
      std::printf("%s\n", nlohmann::json{{"ids", ids}, {"tokens", tokens}}
                              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                              .c_str());
      return;
    }
    // One line per token: id, the vocabulary entry, and the text it decodes to (JSON-quoted so that
    // spaces, newlines and partial UTF-8 stay visible).
    for (size_t i = 0; i < ids.size(); i++) {
      std::string piece = loaded.decode(std::span<const uint32_t>(&ids[i], 1));
      std::printf("%8u  %-24s %s\n", ids[i],
                  nlohmann::json(tokens[i]).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str(),
                  nlohmann::json(piece).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    std::printf("%zu tokens\n", ids.size());
  });
}

}  // namespace vkt::app
