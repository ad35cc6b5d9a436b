// A SentencePiece GGUF tokenizer (tokenizer.ggml.model "llama") against llama.cpp itself:
// tests/reference/gguf_spm_tokenizer_golden.py trained a SentencePiece BPE model (byte fallback,
// split digits, one user-defined symbol), converted it with llama.cpp's convert_hf_to_gguf.py and
// recorded libllama's llama_tokenize / llama_detokenize on every corpus line
// (tests/data/gguf/tokenizer_spm.golden.json), with Hugging Face tokenizers' ids where they differ.
#include <doctest/doctest.h>

#include <fstream>

#include "engine/model/gguf_tokenizer.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

fs::path spm_file() { return test::source_dir() / "tests/data/gguf/tokenizer_spm.gguf"; }

std::vector<std::string> corpus() {
  std::vector<std::string> lines;
  std::ifstream in(test::source_dir() / "tests/data/tokenizers/corpus.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  return lines;
}

}  // namespace

TEST_SUITE("model_io") {

TEST_CASE("gguf tokenizer: SentencePiece (llama) encodes and decodes the corpus as llama.cpp does") {
  const std::vector<std::string> texts = corpus();
  const nlohmann::json golden =
      nlohmann::json::parse(std::ifstream(test::source_dir() / "tests/data/gguf/tokenizer_spm.golden.json"));
  const nlohmann::json& lines = golden.at("lines");
  REQUIRE(lines.size() == texts.size());
  text::Tokenizer ours = model::load_model_tokenizer(spm_file());
  size_t equal = 0, equal_hf = 0, decoded_equal = 0, skip_decoded_equal = 0, byte_tokens = 0;
  for (size_t i = 0; i < texts.size(); i++) {
    const std::string& text = texts[i];
    INFO(text);
    const auto expected = lines[i].at("llama_cpp").get<std::vector<uint32_t>>();
    const std::vector<uint32_t> ids = ours.encode(text, true);
    equal += ids == expected;
    CHECK(ids == expected);
    equal_hf += ids == lines[i].value("hf", expected);
    for (uint32_t id : ids) byte_tokens += ours.id_to_token(id).value_or("").starts_with("<0x");
    const std::string decoded = lines[i].value("decoded", "<s> " + text);
    const std::string decoded_skip = lines[i].value("decoded_skip", text);
    decoded_equal += ours.decode(expected, false) == decoded;
    CHECK(ours.decode(expected, false) == decoded);
    const std::vector<uint32_t> continuation(expected.begin() + (expected.empty() || expected[0] != 1 ? 0 : 1),
                                             expected.end());
    // llama_detokenize keeps the prefix space when the ids start with BOS and it removes specials
    // (3 lines whose text starts with "<s>"); vktune strips it as Hugging Face's Strip decoder does.
    const bool bos_first = !continuation.empty() && continuation[0] == 1;
    const std::string llama_cpp = bos_first && decoded_skip.starts_with(' ') ? decoded_skip.substr(1) : decoded_skip;
    skip_decoded_equal += ours.decode(continuation, true) == decoded_skip;
    CHECK(ours.decode(continuation, true) == llama_cpp);
  }
  CHECK(byte_tokens > 100);  // rare characters really go through the byte tokens
  MESSAGE("SentencePiece GGUF tokenizer: " << equal << " / " << texts.size() << " lines equal to llama.cpp ("
                                           << equal_hf << " to Hugging Face tokenizers, which llama.cpp matches on "
                                           << golden.at("counts").at("hf_equal") << "); decoded " << decoded_equal
                                           << " and " << skip_decoded_equal << " equal");
  CHECK(ours.bos_id() == 1u);
  CHECK(ours.eos_id() == 2u);
  CHECK(ours.adds_bos());
  CHECK(!ours.adds_eos());
  CHECK(ours.is_special(1));
  CHECK(!ours.is_special(*ours.token_to_id("<|sep|>")));  // user-defined: matched in text, not special
  CHECK(ours.vocab_size() == model::GgufFile(spm_file()).get_string_array("tokenizer.ggml.tokens").size());
}

TEST_CASE("gguf tokenizer: SentencePiece without the space prefix (add_space_prefix false, as Gemma's files)") {
  const std::vector<std::string> texts = corpus();
  const nlohmann::json golden =
      nlohmann::json::parse(std::ifstream(test::source_dir() / "tests/data/gguf/tokenizer_spm.golden.json"));
  text::Tokenizer ours =
      model::load_model_tokenizer(test::source_dir() / "tests/data/gguf/tokenizer_spm_noprefix.gguf");
  size_t compared = 0, differing_from_prefixed = 0;
  for (size_t i = 0; i < texts.size(); i++) {
    const nlohmann::json& line = golden.at("lines")[i];
    if (!line.contains("llama_cpp_no_prefix")) continue;
    INFO(texts[i]);
    const auto expected = line.at("llama_cpp_no_prefix").get<std::vector<uint32_t>>();
    CHECK(ours.encode(texts[i], true) == expected);
    differing_from_prefixed += expected != line.at("llama_cpp").get<std::vector<uint32_t>>();
    compared++;
  }
  CHECK(compared == 80);
  CHECK(differing_from_prefixed > 60);  // the prefix space really changes the ids
}

TEST_CASE("gguf tokenizer: a Phi-3 general.name strips whitespace after special tokens, as llama.cpp does") {
  const std::vector<std::string> texts = corpus();
  const nlohmann::json golden =
      nlohmann::json::parse(std::ifstream(test::source_dir() / "tests/data/gguf/tokenizer_spm.golden.json"));
  text::Tokenizer ours = model::load_model_tokenizer(test::source_dir() / "tests/data/gguf/tokenizer_spm_phi3.gguf");
  size_t stripped = 0;
  for (size_t i = 0; i < texts.size(); i++) {
    const nlohmann::json& line = golden.at("lines")[i];
    INFO(texts[i]);
    stripped += line.contains("llama_cpp_phi3");
    CHECK(ours.encode(texts[i], true) ==
          line.value("llama_cpp_phi3", line.at("llama_cpp")).get<std::vector<uint32_t>>());
  }
  CHECK(stripped == 2);
}

TEST_CASE("gguf tokenizer: SentencePiece chat template, special tokens and damaged scores") {
  text::ChatFormat chat = model::load_model_chat_format(spm_file());
  nlohmann::ordered_json messages = nlohmann::ordered_json::array(
      {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Hello"}}});
  CHECK(text::render_chat_text(chat, messages, false) == "<s>[INST] Hi [/INST] Hello</s>");

  // tokenizer.ggml.scores with one entry too few: a UserError naming the file and the key.
  model::GgufFile file(spm_file());
  model::GgufTokenizerDocuments documents = model::gguf_tokenizer_documents(file);
  auto& scores = documents.tokenizer["model"]["scores"];
  CHECK(scores.size() == file.get_string_array("tokenizer.ggml.tokens").size());
  scores.erase(scores.size() - 1);
  std::string error =
      test::user_error_of([&] { text::Tokenizer::from_json(documents.tokenizer, "spm", documents.tokenizer_config); });
  CHECK(error.find("scores") != std::string::npos);
}

}  // TEST_SUITE
