// Training data: TRL's JSONL formats, chat templates, errors that name file:line, and
// tokenization into weighted sequences (prompt loss weight, BOS/EOS, truncation).
#include <doctest/doctest.h>

#include <fstream>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/train/dataset.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::text;  // chat templates
using namespace vkt::train;

namespace {
std::string write_jsonl(const std::string& name, const std::string& contents) {
  auto path = test::temp_dir("dataset") / name;
  std::ofstream(path) << contents;
  return path.string();
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const UserError& error) {
    return std::string(error.what()) + " | " + error.hint();
  }
  return "";
}

// A toy tokenizer: one token per byte, except that "ab" merges into one token (256), so a
// boundary between "a" and "b" exercises the merge-across-boundary path.
TokenizerHooks toy_tokenizer() {
  TokenizerHooks hooks;
  hooks.encode = [](const std::string& text) {
    std::vector<uint32_t> ids;
    for (size_t i = 0; i < text.size(); i++) {
      if (text[i] == 'a' && i + 1 < text.size() && text[i + 1] == 'b') {
        ids.push_back(256);
        i++;
      } else
        ids.push_back(static_cast<unsigned char>(text[i]));
    }
    return ids;
  };
  hooks.add_bos = true;
  hooks.bos_id = 300;
  hooks.eos_ids = {301};
  return hooks;
}
}  // namespace

TEST_SUITE("train") {

TEST_CASE("dataset: the three TRL formats") {
  std::string path = write_jsonl(
      "formats.jsonl",
      "{\"text\": \"hello\"}\n"
      "\n"
      "{\"prompt\": \"Q: 1+1?\", \"completion\": \" 2\"}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n");
  auto examples = read_jsonl(path, ChatFormat{});
  REQUIRE(examples.size() == 3);
  CHECK(examples[0].format == ExampleFormat::text);
  CHECK(examples[1].line == 3);
  CHECK(examples[1].segments[0].text == "Q: 1+1?");
  CHECK_FALSE(examples[1].segments[0].completion);
  CHECK(examples[1].segments[1].completion);
  // ChatML: the assistant header is prompt, its content and <|im_end|> are the completion.
  REQUIRE(examples[2].segments.size() == 2);
  CHECK(examples[2].segments[0].text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(examples[2].segments[1].text == "yo<|im_end|>");
}

TEST_CASE("dataset: chat templates of tokenizer_config.json") {
  // A Qwen2.5-style template: its default system message comes from the template itself.
  std::string qwen =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
  ChatFormat format = parse_chat_format(qwen, "tokenizer_config.json");
  auto segments = render_chat(format, {{"user", "hi"}, {"assistant", "yo"}, {"user", "again"}, {"assistant", "ok"}});
  REQUIRE(segments.size() == 4);
  CHECK(segments[0].text.rfind("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", 0) == 0);
  CHECK(segments[2].text == "\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n");
  CHECK(segments[3].text == "ok<|im_end|>");

  // Llama 3.1's template (tests/data/chat_templates/llama3_1.jinja): the header is prompt, the content and <|eot_id|> completion.
  std::string llama3_template =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
      "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
      "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' "
      "}}{% endif %}";
  ChatFormat llama3 = parse_chat_format(llama3_template, "t", {{"bos_token", "<|begin_of_text|>"}});
  auto llama = render_chat(llama3, {{"system", "be brief"}, {"user", "hi"}, {"assistant", "yo"}});
  REQUIRE(llama.size() == 2);
  CHECK(llama[0].text ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(llama[1].text == "yo<|eot_id|>");

  // Templates are Jinja now: an unsupported construct is an error naming the file, line and column.
  std::string message =
      error_of([] { parse_chat_format("{{ bos_token }}\n{% include 'x' %}", "checkpoint/tokenizer_config.json"); });
  CHECK(message.find("checkpoint/tokenizer_config.json:2:4") != std::string::npos);
  CHECK(message.find("include") != std::string::npos);
}

TEST_CASE("dataset: messages through a model folder's real template (Gemma 3): assistant turns are the completion") {
  auto folder = test::temp_dir("dataset_gemma");
  nlohmann::ordered_json config = {{"bos_token", "<bos>"}, {"eos_token", "<end_of_turn>"}};
  config["chat_template"] = read_text_file(test::source_dir() / "tests/data/chat_templates/gemma3.jinja");
  std::ofstream(folder / "tokenizer_config.json") << config.dump();
  ChatFormat gemma = load_chat_format(folder);
  std::string path = write_jsonl(
      "gemma.jsonl",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi\"}, "
      "{\"role\": \"assistant\", \"content\": \"yo \"}, {\"role\": \"user\", \"content\": \"again\"}, "
      "{\"role\": \"assistant\", \"content\": \"ok\"}]}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}, "
      "{\"role\": \"assistant\", \"content\": \"c\"}]}\n");
  std::string message = error_of([&] { read_jsonl(path, gemma); });
  CHECK(message.find(path + ":2: ") != std::string::npos);  // Gemma's template rejects two user turns in a row
  CHECK(message.find("Conversation roles must alternate") != std::string::npos);
  std::ofstream(path)
      << "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi\"}, "
         "{\"role\": \"assistant\", \"content\": \"yo \"}, {\"role\": \"user\", \"content\": \"again\"}, "
         "{\"role\": \"assistant\", \"content\": \"ok\"}]}\n";
  auto examples = read_jsonl(path, gemma);
  REQUIRE(examples[0].segments.size() == 4);
  CHECK(examples[0].segments[0].text == "<bos><start_of_turn>user\nsys\n\nhi<end_of_turn>\n<start_of_turn>model\n");
  CHECK(examples[0].segments[1].text == "yo<end_of_turn>");  // the template trims the content
  CHECK(examples[0].segments[1].completion);
  CHECK(examples[0].segments[2].text == "\n<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n");
  CHECK_FALSE(examples[0].segments[2].completion);
  CHECK(examples[0].segments[3].text == "ok<end_of_turn>");
}

TEST_CASE("dataset: bad lines give file:line and what is wrong") {
  struct Case {
    const char* contents;
    const char* expected;
  };
  Case cases[] = {
      {"{\"text\": \"ok\"}\n{\"text\": \"broken\"\n", ":2: not valid JSON"},
      {"{\"prompt\": \"p\"}\n", ":1: missing \"completion\""},
      {"{\"txt\": \"p\"}\n", ":1: no \"text\""},
      {"{\"text\": 5}\n", "\"text\" must be a string"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n", "no assistant turn"},
      {"{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}\n", "unknown role \"bot\""},
      {"[1, 2]\n", ":1: not a JSON object"},
      {"\n\n", "has no examples"},
  };
  int index = 0;
  for (const Case& c : cases) {
    std::string path = write_jsonl("bad" + std::to_string(index++) + ".jsonl", c.contents);
    std::string message = error_of([&] { read_jsonl(path, ChatFormat{}); });
    INFO(message);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find(c.expected) != std::string::npos);
  }
  CHECK(error_of([] { read_jsonl("/nonexistent/data.jsonl", ChatFormat{}); }).find("/nonexistent/data.jsonl") !=
        std::string::npos);
}

TEST_CASE("dataset: tokenization with prompt loss weight, BOS, EOS and merges across the boundary") {
  ParsedExample pc;
  pc.format = ExampleFormat::prompt_completion;
  pc.segments = {{"xa", false}, {"by", true}};  // "a|b" merges into one token across the boundary
  ParsedExample text;
  text.format = ExampleFormat::text;
  text.segments = {{"hi", true}};
  TokenizeReport report;
  auto tokens = tokenize_examples({pc, text}, toy_tokenizer(), 0.1, 64, "data.jsonl", report);
  REQUIRE(tokens.size() == 2);
  // BOS x [ab] y EOS: the merged token belongs to the completion.
  CHECK(tokens[0].ids == std::vector<uint32_t>{300, 'x', 256, 'y', 301});
  CHECK(tokens[0].weights == std::vector<float>{0.0f, 0.1f, 1.0f, 1.0f, 1.0f});
  CHECK(report.boundary_mismatches == 1);
  CHECK(tokens[1].weights == std::vector<float>{0.0f, 1.0f, 1.0f, 1.0f});

  // Truncation is reported; a prompt longer than max_length is an error naming file:line.
  ParsedExample long_text;
  long_text.segments = {{"abcdefghij", true}};
  TokenizeReport truncation;
  auto cut = tokenize_examples({long_text}, toy_tokenizer(), 0.1, 5, "data.jsonl", truncation);
  CHECK(cut[0].ids.size() == 5);
  CHECK(truncation.truncated == 1);
  ParsedExample long_prompt;
  long_prompt.format = ExampleFormat::prompt_completion;
  long_prompt.line = 7;
  long_prompt.segments = {{"cdefghijk", false}, {"z", true}};
  std::string message = error_of([&] {
    TokenizeReport r;
    tokenize_examples({long_prompt}, toy_tokenizer(), 0.1, 5, "data.jsonl", r);
  });
  CHECK(message.find("data.jsonl:7") != std::string::npos);
  CHECK(message.find("--max-length") != std::string::npos);
}

}  // TEST_SUITE
