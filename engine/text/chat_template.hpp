#pragma once
// Chat templates: the model's own Jinja chat_template (tokenizer_config.json, or chat_template.jinja
// beside it) rendered as transformers' apply_chat_template(messages, tokenize=False) renders it,
// and the prompt/completion segments of a conversation for completion-only training.
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace vkt::text {

namespace jinja {
struct Template;
}

// A piece of an example's text: the prompt part or the completion (trained) part.
struct TextSegment {
  std::string text;
  bool completion = false;  // trained with weight 1 (else prompt_loss_weight)
};

// The ChatML template used when a model folder has no chat_template.
extern const char* const kChatMLTemplate;

struct ChatFormat {
  std::string source;                              // where the template comes from, for errors
  std::shared_ptr<const jinja::Template> program;  // null: kChatMLTemplate
  // The special-token strings transformers passes to the template (bos_token, eos_token, ...).
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
};

// Parses a Jinja chat template. UserError naming `source`, line and column when it is not valid
// or uses a construct vktune does not render.
ChatFormat parse_chat_format(const std::string& chat_template, const std::string& source,
                             nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object());
// The chat template of <model_dir> (chat_template.jinja, else tokenizer_config.json's
// chat_template; kChatMLTemplate when there is none) with its special tokens.
ChatFormat load_chat_format(const std::filesystem::path& model_dir);

// apply_chat_template(messages, tokenize=False, add_generation_prompt, **extra): `messages` is a JSON
// array of {"role", "content", ...}; `extra` (a JSON object) adds template variables (tools,
// enable_thinking, ...). UserError when the template rejects the conversation.
std::string render_chat_text(const ChatFormat& format, const nlohmann::ordered_json& messages,
                             bool add_generation_prompt,
                             const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());
// The same through a model folder's template: the one call `vktune tokenize --chat` needs.
std::string apply_chat_template(const std::filesystem::path& model_dir, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt,
                                const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());

// A conversation's rendering (add_generation_prompt=False) cut into segments. The output of
// {% generation %} blocks is the completion when the template has them (as transformers' assistant
// masks). Otherwise each assistant turn, from its content to the end of its turn (its end-of-turn
// token; trailing whitespace excluded), is a completion, everything else prompt, and text after the
// last assistant turn is dropped (whitespace, or a generation prompt the template always appends).
// The turn's extent is the iteration of the template's loop over the messages that rendered it; its
// content starts where the rendering first differs from one with that content replaced.
std::vector<TextSegment> render_chat_segments(const ChatFormat& format, const nlohmann::ordered_json& messages);
std::vector<TextSegment> render_chat(const ChatFormat& format,
                                     const std::vector<std::pair<std::string, std::string>>& messages);

}  // namespace vkt::text
