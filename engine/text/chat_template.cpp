#include "engine/text/chat_template.hpp"

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"

namespace vkt::text {
namespace fs = std::filesystem;

namespace {

// The chat_template string of tokenizer_config.json ("" when there is none).
std::string read_chat_template(const fs::path& model_dir) {
  fs::path path = model_dir / "tokenizer_config.json";
  if (!fs::exists(path)) return "";
  try {
    nlohmann::json config = nlohmann::json::parse(read_text_file(path));
    if (config.contains("chat_template") && config["chat_template"].is_string()) return config["chat_template"];
  } catch (const nlohmann::json::exception& error) {
    throw UserError(path.string() + ": not valid JSON (" + error.what() + ")", "fix or remove tokenizer_config.json");
  }
  return "";
}

}  // namespace

ChatFormat detect_chat_format(const std::string& chat_template, const std::string& source) {
  ChatFormat format;
  if (chat_template.empty()) return format;  // ChatML built in
  if (chat_template.find("<|start_header_id|>") != std::string::npos) {
    format.kind = ChatTemplate::llama3;
    return format;
  }
  if (chat_template.find("<|im_start|>") != std::string::npos) {
    format.kind = ChatTemplate::chatml;
    // Qwen templates add a default system message when the conversation has none: the literal
    // text between "<|im_start|>system\n" and "<|im_end|>" that contains no template code.
    const std::string opener = "<|im_start|>system\\n";
    for (size_t at = chat_template.find(opener); at != std::string::npos; at = chat_template.find(opener, at + 1)) {
      size_t start = at + opener.size();
      size_t end = chat_template.find("<|im_end|>", start);
      if (end == std::string::npos) break;
      std::string text = chat_template.substr(start, end - start);
      if (text.find('{') == std::string::npos && text.find('\'') == std::string::npos) {
        format.default_system = text;
        break;
      }
    }
    return format;
  }
  throw UserError(source + ": its chat_template is not one vktune can render",
                  "supported: ChatML (<|im_start|>, also Qwen) and Llama-3 (<|start_header_id|>); "
                  "or convert the data to {\"prompt\",\"completion\"}");
}

std::vector<TextSegment> render_chat(const ChatFormat& format,
                                     const std::vector<std::pair<std::string, std::string>>& messages) {
  std::vector<TextSegment> segments;
  auto prompt = [&](const std::string& text) {
    if (!segments.empty() && !segments.back().completion) segments.back().text += text;
    else segments.push_back({text, false});
  };
  if (format.kind == ChatTemplate::chatml) {
    if (!format.default_system.empty() && (messages.empty() || messages[0].first != "system"))
      prompt("<|im_start|>system\n" + format.default_system + "<|im_end|>\n");
    for (const auto& [role, content] : messages) {
      if (role == "assistant") {
        prompt("<|im_start|>assistant\n");
        segments.push_back({content + "<|im_end|>", true});
        prompt("\n");
      } else {
        prompt("<|im_start|>" + role + "\n" + content + "<|im_end|>\n");
      }
    }
  } else {
    prompt("<|begin_of_text|>");
    for (const auto& [role, content] : messages) {
      prompt("<|start_header_id|>" + role + "<|end_header_id|>\n\n");
      if (role == "assistant") segments.push_back({content + "<|eot_id|>", true});
      else prompt(content + "<|eot_id|>");
    }
  }
  // A trailing newline after the last assistant turn is not part of the conversation.
  if (!segments.empty() && !segments.back().completion && segments.back().text == "\n") segments.pop_back();
  return segments;
}

ChatFormat load_chat_format(const fs::path& model_dir) {
  return detect_chat_format(read_chat_template(model_dir), (model_dir / "tokenizer_config.json").string());
}

}  // namespace vkt::text
