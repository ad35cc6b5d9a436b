#include "engine/train/dataset.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"

namespace vkt::train {

using nlohmann::json;

namespace {
[[noreturn]] void bad_line(const std::string& path, int64_t line, const std::string& what, const std::string& hint) {
  throw UserError(path + ":" + std::to_string(line) + ": " + what, hint);
}

std::string string_field(const json& object, const char* key, const std::string& path, int64_t line) {
  const json& value = object.at(key);
  if (!value.is_string())
    bad_line(path, line, std::string("\"") + key + "\" must be a string, got " + value.type_name(), "quote the value");
  return value.get<std::string>();
}
}  // namespace

std::vector<std::pair<std::string, std::string>> message_turns(const json& messages, const std::string& field,
                                                               const std::string& path, int64_t line) {
  if (!messages.is_array() || messages.empty())
    bad_line(path, line, "\"" + field + "\" must be a non-empty array",
             "e.g. [{\"role\":\"user\",\"content\":\"hi\"}, ...]");
  std::vector<std::pair<std::string, std::string>> turns;
  for (size_t i = 0; i < messages.size(); i++) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m.contains("content"))
      bad_line(path, line, field + "[" + std::to_string(i) + "] needs \"role\" and \"content\"",
               "each message is {\"role\": \"user\"|\"assistant\"|\"system\", \"content\": \"...\"}");
    std::string role = string_field(m, "role", path, line), content = string_field(m, "content", path, line);
    if (role != "user" && role != "assistant" && role != "system")
      bad_line(path, line, field + "[" + std::to_string(i) + "] has unknown role \"" + role + "\"",
               "roles are system, user and assistant");
    turns.emplace_back(role, content);
  }
  return turns;
}

std::vector<ParsedExample> read_jsonl(const std::string& path, const text::ChatFormat& chat) {
  std::ifstream in(path);
  if (!in) throw UserError("cannot read data file " + path, "check the --data / --eval-data path");
  const char* formats =
      "each line must be a JSON object with \"text\", or \"prompt\" and \"completion\", or \"messages\"";
  std::vector<ParsedExample> examples;
  std::string text;
  int64_t line = 0;
  while (std::getline(in, text)) {
    line++;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are allowed
    json object;
    try {
      object = json::parse(text);
    } catch (const json::exception& error) {  // parse_error, or out_of_range for a number like 1E400
      bad_line(path, line, std::string("not valid JSON (") + error.what() + ")", formats);
    }
    if (!object.is_object()) bad_line(path, line, "not a JSON object", formats);
    ParsedExample example;
    example.line = line;
    if (object.contains("messages")) {
      example.format = ExampleFormat::messages;
      std::vector<std::pair<std::string, std::string>> turns =
          message_turns(object["messages"], "messages", path, line);
      bool has_assistant = false;
      for (const auto& turn : turns) has_assistant |= turn.first == "assistant";
      if (!has_assistant)
        bad_line(path, line, "the conversation has no assistant turn, so nothing would be trained",
                 "add an assistant message");
      try {
        example.segments = text::render_chat(chat, turns);
      } catch (const UserError& error) {  // the chat template rejects the conversation
        bad_line(path, line, error.what(), error.hint());
      }
    } else if (object.contains("prompt") || object.contains("completion")) {
      example.format = ExampleFormat::prompt_completion;
      if (!object.contains("prompt")) bad_line(path, line, "missing \"prompt\" (it has \"completion\")", formats);
      if (!object.contains("completion")) bad_line(path, line, "missing \"completion\" (it has \"prompt\")", formats);
      std::string prompt = string_field(object, "prompt", path, line);
      std::string completion = string_field(object, "completion", path, line);
      if (completion.empty()) bad_line(path, line, "\"completion\" is empty: nothing to train", "remove the line");
      example.segments = {{prompt, false}, {completion, true}};
    } else if (object.contains("text")) {
      example.format = ExampleFormat::text;
      std::string body = string_field(object, "text", path, line);
      if (body.empty()) bad_line(path, line, "\"text\" is empty", "remove the line");
      example.segments = {{body, true}};
    } else {
      bad_line(path, line, "no \"text\", \"prompt\"/\"completion\" or \"messages\" field", formats);
    }
    examples.push_back(std::move(example));
  }
  if (examples.empty()) throw UserError(path + ": the file has no examples", "each line is one JSON example");
  return examples;
}

std::vector<TokenizedExample> tokenize_examples(const std::vector<ParsedExample>& examples,
                                                const TokenizerHooks& tokenizer, double prompt_loss_weight,
                                                uint32_t max_length, const std::string& source, TokenizeReport& report,
                                                bool strict_prompt_length) {
  std::vector<TokenizedExample> out;
  out.reserve(examples.size());
  for (const ParsedExample& example : examples) {
    report.examples++;
    TokenizedExample tokens;
    // Chat templates carry their own BOS text (Llama-3) or none (ChatML): the post-processor's
    // BOS is added to text and prompt/completion examples only, as apply_chat_template does.
    if (tokenizer.add_bos && example.format != ExampleFormat::messages) {
      tokens.ids.push_back(tokenizer.bos_id);
      tokens.weights.push_back(0.0f);
    }
    // Tokenize growing prefixes: the tokens of the whole text, with each segment's boundary
    // placed where the prefix's tokens end.
    std::string prefix;
    std::vector<uint32_t> previous;
    for (const text::TextSegment& segment : example.segments) {
      prefix += segment.text;
      std::vector<uint32_t> current = tokenizer.encode(prefix);
      size_t common = 0;
      while (common < previous.size() && common < current.size() && previous[common] == current[common]) common++;
      if (common < previous.size()) {
        // A merge crossed the boundary: the changed tokens count as this segment's.
        report.boundary_mismatches++;
        size_t keep = tokens.ids.size() - (previous.size() - common);
        tokens.ids.resize(keep);
        tokens.weights.resize(keep);
      }
      float weight = segment.completion ? 1.0f : static_cast<float>(prompt_loss_weight);
      for (size_t i = common; i < current.size(); i++) {
        tokens.ids.push_back(current[i]);
        tokens.weights.push_back(weight);
      }
      previous = std::move(current);
    }
    if (!tokenizer.eos_ids.empty()) {
      bool ends_with_eos = false;
      for (uint32_t eos : tokenizer.eos_ids) ends_with_eos |= !tokens.ids.empty() && tokens.ids.back() == eos;
      if (!ends_with_eos) {
        tokens.ids.push_back(tokenizer.eos_ids.front());
        tokens.weights.push_back(1.0f);
      }
    }
    // Truncation.
    size_t prompt_tokens = 0;
    while (prompt_tokens < tokens.ids.size() && tokens.weights[prompt_tokens] != 1.0f) prompt_tokens++;
    if (tokens.ids.size() > max_length) {
      if (example.format != ExampleFormat::text && prompt_tokens >= max_length) {
        if (strict_prompt_length)
          throw UserError(source + ":" + std::to_string(example.line) + ": the prompt alone is " +
                              std::to_string(prompt_tokens) + " tokens, at least --max-length (" +
                              std::to_string(max_length) + "): no completion token would be trained",
                          "raise --max-length or shorten the prompt");
        report.dropped++;
        continue;
      }
      tokens.ids.resize(max_length);
      tokens.weights.resize(max_length);
      report.truncated++;
    }
    report.tokens += static_cast<int64_t>(tokens.ids.size());
    out.push_back(std::move(tokens));
  }
  if (out.empty()) throw UserError(source + ": no example is left to train on", "check --max-length and the data");
  return out;
}

}  // namespace vkt::train
