#include "engine/text/chat_template.hpp"

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/text/jinja_eval.hpp"
#include "engine/text/jinja_parser.hpp"

namespace vkt::text {
namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

const char* const kChatMLTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

namespace {

const std::shared_ptr<const jinja::Template>& chatml_program() {
  static const std::shared_ptr<const jinja::Template> program =
      jinja::parse_template(kChatMLTemplate, "built-in ChatML template");
  return program;
}

// transformers' special_tokens_map: each *_token of tokenizer_config.json, a string or an AddedToken dict.
Json special_tokens_of(const Json& config) {
  Json tokens = Json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (!config.contains(key)) continue;
    const Json& token = config[key];
    if (token.is_string())
      tokens[key] = token;
    else if (token.is_object() && token.contains("content") && token["content"].is_string())
      tokens[key] = token["content"];
  }
  return tokens;
}

// A list of named templates ([{"name": "default", "template": ...}, ...]) renders its "default" one.
std::string template_text(const Json& value, const std::string& source) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array())
    for (const Json& entry : value)
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        return entry["template"].get<std::string>();
  throw UserError(source + ": chat_template must be a string or a list with a \"default\" template",
                  "fix tokenizer_config.json's chat_template");
}

size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) n++;
  return n;
}

Json variables_of(const ChatFormat& format, const Json& messages, bool add_generation_prompt, const Json& extra) {
  Json variables = format.special_tokens;
  // transformers copies a message's reasoning under the names templates read it by.
  Json chat = Json::array();
  for (Json message : messages) {
    if (message.is_object()) {
      for (const char* field : {"reasoning_content", "thinking", "reasoning"}) {
        if (!message.contains(field) || message[field].is_null()) continue;
        Json reasoning = message[field];
        if (!message.contains("thinking")) {
          Json reordered = {{"thinking", reasoning}};  // {"thinking": r, **message, "reasoning_content": r}
          for (auto it = message.begin(); it != message.end(); ++it) reordered[it.key()] = it.value();
          message = std::move(reordered);
        }
        message["reasoning_content"] = reasoning;
        break;
      }
    }
    chat.push_back(std::move(message));
  }
  variables["messages"] = std::move(chat);
  variables["tools"] = nullptr;
  variables["documents"] = nullptr;
  variables["add_generation_prompt"] = add_generation_prompt;
  for (auto it = extra.begin(); it != extra.end(); ++it) variables[it.key()] = it.value();
  return variables;
}

std::string render_traced(const ChatFormat& format, const Json& messages, jinja::RenderTrace* trace) {
  const auto& program = format.program ? format.program : chatml_program();
  return jinja::render(*program, variables_of(format, messages, false, Json::object()), trace);
}

}  // namespace

ChatFormat parse_chat_format(const std::string& chat_template, const std::string& source, Json special_tokens) {
  ChatFormat format;
  format.source = source;
  format.program = jinja::parse_template(chat_template, source);
  format.special_tokens = std::move(special_tokens);
  return format;
}

ChatFormat load_chat_format(const fs::path& model_dir) {
  fs::path config_path = model_dir / "tokenizer_config.json";
  Json config = Json::object();
  if (fs::exists(config_path)) {
    try {
      config = Json::parse(read_text_file(config_path));
    } catch (const Json::exception& error) {
      throw UserError(config_path.string() + ": not valid JSON (" + error.what() + ")",
                      "fix or remove tokenizer_config.json");
    }
  }
  Json special_tokens = special_tokens_of(config);
  fs::path jinja_path = model_dir / "chat_template.jinja";
  if (fs::exists(jinja_path)) return parse_chat_format(read_text_file(jinja_path), jinja_path.string(), special_tokens);
  if (config.contains("chat_template") && !config["chat_template"].is_null()) {
    std::string source = config_path.string() + " chat_template";
    return parse_chat_format(template_text(config["chat_template"], source), source, special_tokens);
  }
  ChatFormat format;
  format.source = "built-in ChatML template";
  format.special_tokens = std::move(special_tokens);
  return format;
}

std::string render_chat_text(const ChatFormat& format, const Json& messages, bool add_generation_prompt,
                             const Json& extra) {
  const auto& program = format.program ? format.program : chatml_program();
  return jinja::render(*program, variables_of(format, messages, add_generation_prompt, extra));
}

std::string apply_chat_template(const fs::path& model_dir, const Json& messages, bool add_generation_prompt,
                                const Json& extra) {
  return render_chat_text(load_chat_format(model_dir), messages, add_generation_prompt, extra);
}

namespace {

const jinja::MessageSpan* turn_of(const std::vector<jinja::MessageSpan>& turns, size_t message) {
  for (const jinja::MessageSpan& turn : turns)
    if (turn.message == message) return &turn;
  return nullptr;
}

bool is_assistant(const Json& message) { return message.is_object() && message.value("role", "") == "assistant"; }

// [start, end) of assistant message i's completion in `full`. Its content starts at the first byte
// where the rendering differs from one with the assistant contents replaced by a sentinel (templates
// trim, strip or split contents, so searching for the text would not do). When the template's loop
// over the messages rendered the turn, the comparison stays inside that iteration's output (one
// sentinel rendering serves every turn) and the span ends where the iteration ends (after the
// end-of-turn token), less trailing whitespace; otherwise a rendering with only this content
// replaced is compared and the span ends where the content ends (the last byte that differs).
std::pair<size_t, size_t> completion_span(const ChatFormat& format, const Json& messages, size_t i,
                                          const std::string& full, const jinja::RenderTrace& trace,
                                          const std::string& all_replaced, const jinja::RenderTrace& replaced_trace) {
  const jinja::MessageSpan* turn = turn_of(trace.turns, i);
  const jinja::MessageSpan* replaced_turn = turn_of(replaced_trace.turns, i);
  size_t start, end;
  if (turn && replaced_turn) {
    start = turn->begin +
            common_prefix(full.substr(turn->begin, turn->end - turn->begin),
                          all_replaced.substr(replaced_turn->begin, replaced_turn->end - replaced_turn->begin));
    end = turn->end;
  } else {
    Json changed = messages;
    changed[i]["content"] = "\x01";
    const std::string other = render_traced(format, changed, nullptr);
    start = common_prefix(full, other);
    size_t suffix = 0;
    while (suffix < full.size() - start && suffix < other.size() - start &&
           full[full.size() - 1 - suffix] == other[other.size() - 1 - suffix])
      suffix++;
    end = full.size() - suffix;
  }
  while (end > start && std::isspace(static_cast<unsigned char>(full[end - 1]))) end--;
  return {start, end};
}

}  // namespace

std::vector<TextSegment> render_chat_segments(const ChatFormat& format, const Json& messages) {
  jinja::RenderTrace trace;
  const std::string full = render_traced(format, messages, &trace);
  std::vector<TextSegment> segments;
  if (!trace.generation.empty()) {  // the template marks the trained text itself (transformers' assistant masks)
    size_t cursor = 0;
    for (const auto& [begin, end] : trace.generation) {
      if (begin > cursor) segments.push_back({full.substr(cursor, begin - cursor), false});
      if (end > begin) segments.push_back({full.substr(begin, end - begin), true});
      cursor = end;
    }
    return segments;
  }
  Json replaced = messages;
  for (Json& message : replaced)
    if (is_assistant(message)) message["content"] = "\x01";
  jinja::RenderTrace replaced_trace;
  const std::string all_replaced = trace.turns.empty() ? "" : render_traced(format, replaced, &replaced_trace);
  size_t cursor = 0;
  for (size_t i = 0; i < messages.size(); i++) {
    if (!is_assistant(messages[i])) continue;
    auto [start, end] = completion_span(format, messages, i, full, trace, all_replaced, replaced_trace);
    if (start < cursor)
      throw UserError(format.source + ": cannot tell where assistant message " + std::to_string(i) +
                          " starts in the rendered conversation",
                      "the template renders messages out of order; use {\"prompt\",\"completion\"} data instead");
    if (start > cursor) segments.push_back({full.substr(cursor, start - cursor), false});
    if (end > start) segments.push_back({full.substr(start, end - start), true});
    cursor = std::max(cursor, end);
  }
  if (segments.empty() && !full.empty()) segments.push_back({full, false});  // no assistant turn: all prompt
  return segments;
}

std::vector<TextSegment> render_chat(const ChatFormat& format,
                                     const std::vector<std::pair<std::string, std::string>>& messages) {
  Json chat = Json::array();
  for (const auto& [role, content] : messages) chat.push_back({{"role", role}, {"content", content}});
  return render_chat_segments(format, chat);
}

}  // namespace vkt::text
