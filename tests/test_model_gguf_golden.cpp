// GGUF models written by llama.cpp's own converter (tests/reference/gguf_model_golden.py:
// convert_hf_to_gguf.py of llama-cpp-python 0.3.36, --outtype f32 and q8_0) from the tiny HF golden
// models of tests/data/hf: vktune's GGUF loader (engine/model/gguf_model.cpp) must give the HF
// folder's config, the HF tensors exactly (llama's Q/K row permutation undone), and transformers'
// logits, loss and LoRA gradients.
// Bounds: f32 files -- every tensor bit-equal to the safetensors one, logits max-abs <= 1e-5 against
// vktune's run of the HF folder and the model_hf bounds against transformers; q8_0 files -- the
// model_hf bounds against transformers run on the file's dequantized weights (gguf-py).
#include <doctest/doctest.h>

#include <fstream>

#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/model/safetensors.hpp"
#include "tests/golden_run.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

const char* const kFamilies[] = {"llama3", "smollm2", "mistral", "qwen2", "qwen3", "phi3"};
// Tiny Gemmas that keep to what GGUF can say (gguf_model_golden.py's GEMMA): HF folder, adapter and
// transformers golden under tests/data/gguf.
const char* const kGemmas[] = {"gemma2", "gemma3"};

fs::path hf_dir() { return test::source_dir() / "tests/data/hf"; }
fs::path gguf_dir() { return test::source_dir() / "tests/data/gguf"; }
fs::path gguf_path(const std::string& family, const std::string& type) {
  return gguf_dir() / (family + "." + type + ".gguf");
}

// The f32 GGUF of `family` + the HF folder's adapter against the transformers golden (the model_hf
// bounds) and against vktune's run of the HF folder (logits within 1e-5; equal in practice).
void check_f32_file(const std::string& family, const fs::path& golden_path, const fs::path& folder) {
  const spec::RunSettings settings = test::lora_run_settings(kernels::WeightFormat::f32);
  const fs::path file = gguf_path(family, "f32"), adapter = folder / "adapter";
  test::GoldenErrors errors = test::check_golden_variant(golden_path, "fp32", file, adapter, settings, {});
  test::GoldenFile golden(golden_path);
  test::GoldenBatch batch = test::golden_batch(golden);
  test::GoldenRun from_gguf = test::run_golden(golden, file, adapter, settings);
  test::GoldenRun from_hf = test::run_golden(golden, folder, adapter, settings);
  const double versus_folder =
      test::worst_real_row_error(from_gguf.logits, from_hf.logits, batch,
                                 static_cast<uint32_t>(from_hf.logits.size() / (batch.batch * batch.seq_len)));
  CHECK(versus_folder <= 1e-5);
  MESSAGE(family << " f32 GGUF: logits max-abs vs the HF folder " << versus_folder << ", vs transformers "
                 << errors.logits << ", loss relative " << errors.loss << ", worst gradient relative "
                 << errors.gradient);
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("gguf model: llama.cpp's converter output gives the HF folder's config") {
  for (const char* family : kFamilies) {
    INFO(std::string(family));
    model::ModelConfig ours = model::load_model_config(gguf_path(family, "f32"));
    model::ModelConfig hf = model::load_model_config(hf_dir() / family);
    CHECK(ours.architecture ==
          (hf.architecture == model::Architecture::mistral ? model::Architecture::llama : hf.architecture));
    test::check_gguf_config_fields(ours, hf);
    // llama3's rope scaling arrives as rope_freqs factors: the same frequencies to an ulp or two.
    for (bool long_factors : {false, true}) {
      std::vector<float> a = model::rope_inv_freq(ours, long_factors), b = model::rope_inv_freq(hf, long_factors);
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); i++) CHECK(std::abs(a[i] - b[i]) <= 4e-7f * std::abs(b[i]));
    }
    if (std::string(family) != "phi3") continue;
    // Phi-3: longrope from rope_factors_long/short + original_context_length, the window kept.
    CHECK(ours.rope_scaling.type == hf.rope_scaling.type);
    CHECK(ours.rope_scaling.original_max_position_embeddings == hf.rope_scaling.original_max_position_embeddings);
    CHECK(ours.rope_scaling.attention_factor == doctest::Approx(hf.rope_scaling.attention_factor).epsilon(1e-12));
    CHECK(ours.sliding_window == hf.sliding_window);
    CHECK(ours.sliding_window_layers == hf.sliding_window_layers);
  }
  CHECK(model::load_model_config(gguf_path("phi3", "f32")).rope_scaling.type == "longrope");
  CHECK(!model::load_model_config(gguf_path("llama3", "f32")).rope_frequency_factors.empty());
}

TEST_CASE("gguf model: every tensor equals the safetensors one (llama's attn_q/attn_k unpermuted)") {
  for (const char* family : kFamilies) {
    INFO(std::string(family));
    model::ModelConfig config = model::load_model_config(gguf_path(family, "f32"));
    model::GgufTensorSource gguf(gguf_path(family, "f32"), config);
    model::SafetensorsFolder folder(hf_dir() / family);
    model::SafetensorsSource hf(folder);
    size_t compared = 0;
    for (const std::string& name : folder.names()) {
      INFO(name);
      REQUIRE(gguf.contains(name));
      CHECK(gguf.read(name) == hf.read(name));
      compared++;
    }
    // Not HF tensors: llama3's rope_freqs, Phi-3's rope_factors_long/short (read as config).
    const size_t extra = config.rope_frequency_factors.empty() ? 0 : 1;
    CHECK(compared == gguf.file().tensors().size() - extra - (std::string(family) == "phi3" ? 2 : 0));
  }
}

TEST_CASE("gguf model: f32 files give transformers' logits, loss and LoRA gradients") {
  for (const char* family : kFamilies) {
    INFO(std::string(family));
    check_f32_file(family, hf_dir() / (std::string(family) + ".golden.bin"), hf_dir() / family);
  }
}

TEST_CASE("gguf model: q8_0 files match transformers on the dequantized weights") {
  for (const char* family : {"llama3", "qwen3"}) {
    INFO(std::string(family));
    test::GoldenErrors errors = test::check_golden_variant(
        gguf_dir() / (std::string(family) + ".q8_0.golden.bin"), "q8_0", gguf_path(family, "q8_0"),
        hf_dir() / family / "adapter", test::lora_run_settings(kernels::WeightFormat::f32), {});
    MESSAGE(std::string(family) << " q8_0 GGUF: logits max-abs " << errors.logits << ", loss relative " << errors.loss
                                << ", worst gradient relative " << errors.gradient);
  }
}

TEST_CASE("gguf model: gemma2/gemma3 from llama.cpp's converter give the HF config, weights and logits") {
  for (const char* family : kGemmas) {
    INFO(std::string(family));
    const fs::path folder = gguf_dir() / ("hf_" + std::string(family)), file = gguf_path(family, "f32");
    model::ModelConfig ours = model::load_model_config(file);
    model::ModelConfig hf = model::load_model_config(folder);
    CHECK(ours.architecture == hf.architecture);
    CHECK(ours.gemma);
    test::check_config_sizes(ours, hf);
    for (double model::ModelConfig::*field :
         {&model::ModelConfig::query_pre_attn_scalar, &model::ModelConfig::rope_theta,
          &model::ModelConfig::rope_local_theta, &model::ModelConfig::attn_logit_softcapping,
          &model::ModelConfig::final_logit_softcapping})
      CHECK(ours.*field == hf.*field);
    CHECK(ours.sliding_window == hf.sliding_window);
    CHECK(ours.sliding_window_layers == hf.sliding_window_layers);
    CHECK(ours.qk_norm == hf.qk_norm);
    CHECK(ours.tie_word_embeddings == hf.tie_word_embeddings);

    // The converter stored each norm as fl(1 + w): w comes back to within rounding, and 1 + w --
    // what the model computes -- bit-exactly; every other tensor is bit-equal.
    model::GgufTensorSource gguf(file, ours);
    model::SafetensorsFolder safetensors(folder);
    model::SafetensorsSource source(safetensors);
    size_t compared = 0, norms = 0;
    for (const std::string& name : safetensors.names()) {
      INFO(name);
      REQUIRE(gguf.contains(name));
      std::vector<float> a = gguf.read(name), b = source.read(name);
      REQUIRE(a.size() == b.size());
      if (name.ends_with("norm.weight")) {
        norms++;
        for (size_t i = 0; i < a.size(); i++) {
          CHECK(1.0f + a[i] == 1.0f + b[i]);
          CHECK(std::abs(a[i] - b[i]) <= 6e-8f);
        }
      } else {
        CHECK(a == b);
      }
      compared++;
    }
    CHECK(compared == gguf.file().tensors().size());
    CHECK(norms == (std::string(family) == "gemma3" ? 13u : 9u));

    check_f32_file(family, gguf_dir() / (std::string(family) + ".golden.bin"), folder);
  }
}

TEST_CASE("gguf model: a file that is not a model gives an error naming the file and key") {
  const fs::path file = gguf_dir() / "blocks.gguf";
  std::string error = test::user_error_of([&] { model::load_model_config(file); });
  CHECK(error.find(file.string()) != std::string::npos);
  CHECK(error.find("general.architecture") != std::string::npos);
}

}  // TEST_SUITE

TEST_SUITE("model_io") {

// tests/data/gguf/tokenizer_<family>.gguf: llama.cpp's converter (--vocab-only) wrote these from
// tests/data/tokenizers/bytelevel_<family>.json; the tokenizer vktune builds from the GGUF must
// encode and decode the corpus exactly as the tokenizer.json does.
TEST_CASE(
    "gguf tokenizer: byte-level BPE from tokenizer.ggml.* encodes the corpus as llama.cpp (tokenizer.json but NFC)") {
  std::vector<std::string> corpus;
  {
    std::ifstream in(test::source_dir() / "tests/data/tokenizers/corpus.jsonl");
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) corpus.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  }
  REQUIRE(corpus.size() > 20);
  for (const char* family : {"llama3", "qwen2"}) {
    INFO(std::string(family));
    text::Tokenizer ours = model::load_model_tokenizer(gguf_dir() / ("tokenizer_" + std::string(family) + ".gguf"));
    // GGUF keeps no single_word/lstrip/rstrip flags of added tokens (llama.cpp matches a
    // USER_DEFINED token anywhere): bytelevel_llama3.json's "hi" (single_word), "<mask>" (lstrip) and
    // "<r>" (rstrip) differ on 8 corpus lines for that reason alone, so the reference is the
    // tokenizer.json with those flags cleared -- what the GGUF file can say.
    const fs::path json_path =
        test::source_dir() / "tests/data/tokenizers" / ("bytelevel_" + std::string(family) + ".json");
    nlohmann::json document = nlohmann::json::parse(std::ifstream(json_path));
    for (auto& token : document["added_tokens"]) token["single_word"] = token["lstrip"] = token["rstrip"] = false;
    text::Tokenizer reference = text::Tokenizer::from_json(document, json_path.string());
    // Where llama.cpp itself gives other ids (tests/reference/gguf_spm_tokenizer_golden.py ran
    // libllama on these files: qwen2 without tokenizer.json's NFC), vktune follows llama.cpp.
    const nlohmann::json llama_cpp =
        nlohmann::json::parse(std::ifstream(gguf_dir() / "tokenizer_gpt2.llama_cpp.json"))[std::string(family)];
    size_t differing = 0;
    for (size_t i = 0; i < corpus.size(); i++) {
      const std::string& text = corpus[i];
      std::vector<uint32_t> a = ours.encode(text, true), b = reference.encode(text, true);
      if (llama_cpp.contains(std::to_string(i))) b = llama_cpp[std::to_string(i)].get<std::vector<uint32_t>>();
      if (a != b) {
        differing++;
        MESSAGE(std::string(family) << " differs on: " << text);
      }
      CHECK(ours.decode(a, false) == reference.decode(a, false));
    }
    CHECK(differing == 0);
    CHECK(llama_cpp.size() == (std::string(family) == "qwen2" ? 6u : 0u));
    CHECK(ours.eos_id() == reference.eos_id());
    CHECK(ours.adds_bos() == reference.adds_bos());
    CHECK(ours.vocab_size() == reference.vocab_size());
  }
  text::ChatFormat chat = model::load_model_chat_format(gguf_dir() / "tokenizer_qwen2.gguf");
  nlohmann::ordered_json messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "hi"}}});
  CHECK(text::render_chat_text(chat, messages, true) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  std::string error = test::user_error_of([&] { model::load_model_tokenizer(gguf_path("llama3", "f32")); });
  CHECK(error.find("has no tokenizer (tokenizer.ggml.model is \"none\")") != std::string::npos);
}

}  // TEST_SUITE
