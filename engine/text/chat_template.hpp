#pragma once
// Chat templates we render natively (ChatML, also Qwen's; Llama 3) rather than running the Jinja
// chat_template of tokenizer_config.json; anything else there is an error.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace vkt::text {

// A piece of an example's text: the prompt part or the completion (trained) part.
struct TextSegment {
  std::string text;
  bool completion = false;  // trained with weight 1 (else prompt_loss_weight)
};

enum class ChatTemplate { chatml, llama3 };
struct ChatFormat {
  ChatTemplate kind = ChatTemplate::chatml;
  std::string default_system;  // ChatML/Qwen: system message added when the conversation has none
};
// Recognizes the chat_template string of tokenizer_config.json ("" means none: ChatML built in).
// UserError naming `source` when it is not a shape we support.
ChatFormat detect_chat_format(const std::string& chat_template, const std::string& source);
// Renders a conversation into prompt/completion segments.
std::vector<TextSegment> render_chat(const ChatFormat& format, const std::vector<std::pair<std::string, std::string>>& messages);
// The chat format of <model_dir>/tokenizer_config.json's chat_template (ChatML when the file or
// the key is missing). UserError when the file is not valid JSON or the template is not supported.
ChatFormat load_chat_format(const std::filesystem::path& model_dir);

}  // namespace vkt::text
