// Hugging Face interop: config.json (TinyLlama, Llama 3.2, Qwen2.5, Mistral; transformers 4 and
// 5 spellings) and RoPE frequencies against torch.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/half.hpp"
#include "engine/model/config.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using namespace vkt::model;
using namespace vkt::test;  // user_error_of, write_bytes, load_json
using nlohmann::json;
namespace fs = std::filesystem;

TEST_SUITE("model_io") {

// TinyLlama-1.1B-Chat-v1.0's config.json, as published.
const char* kTinyLlamaConfig = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632,
  "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 22,
  "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.35.0", "use_cache": true,
  "vocab_size": 32000})";

// Llama-3.2-1B-Instruct's config.json (llama3 rope scaling, eos list, tied embeddings, head_dim).
const char* kLlama32Config = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0",
  "use_cache": true, "vocab_size": 128256})";

// Qwen2.5-0.5B's config.json.
const char* kQwen2Config = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
  "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
  "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.40.1",
  "use_cache": true, "use_mrope": false, "use_sliding_window": false, "vocab_size": 151936})";

// Mistral-7B-v0.1's config.json (sliding window 4096).
const char* kMistralConfig = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
  "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000})";

TEST_CASE("config: TinyLlama, Llama 3.2, Qwen2.5, Mistral configs parse to the expected fields") {
  ModelConfig tiny = parse_model_config(json::parse(kTinyLlamaConfig), "tinyllama/config.json");
  CHECK(tiny.architecture == Architecture::llama);
  CHECK(tiny.hidden_size == 2048);
  CHECK(tiny.intermediate_size == 5632);
  CHECK(tiny.num_hidden_layers == 22);
  CHECK(tiny.num_attention_heads == 32);
  CHECK(tiny.num_key_value_heads == 4);
  CHECK(tiny.head_dim == 64);  // 2048 / 32
  CHECK(tiny.q_size() == 2048);
  CHECK(tiny.kv_size() == 256);
  CHECK(tiny.rms_norm_eps == 1e-5);
  CHECK(tiny.rope_theta == 10000.0);
  CHECK(tiny.rope_scaling.type == "default");
  CHECK(tiny.vocab_size == 32000);
  CHECK(!tiny.tie_word_embeddings);
  CHECK(tiny.bos_token_id == 1);
  CHECK(tiny.eos_token_ids == std::vector<int64_t>{2});
  CHECK(tiny.torch_dtype == "bfloat16");
  CHECK(!tiny.qkv_bias);
  CHECK(!tiny.sliding_window);

  ModelConfig llama = parse_model_config(json::parse(kLlama32Config), "llama/config.json");
  CHECK(llama.head_dim == 64);
  CHECK(llama.tie_word_embeddings);
  CHECK(llama.eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
  CHECK(llama.rope_scaling.type == "llama3");
  CHECK(llama.rope_scaling.factor == 32.0);
  CHECK(llama.rope_scaling.low_freq_factor == 1.0);
  CHECK(llama.rope_scaling.high_freq_factor == 4.0);
  CHECK(llama.rope_scaling.original_max_position_embeddings == 8192);
  CHECK(llama.max_position_embeddings == 131072);

  ModelConfig qwen = parse_model_config(json::parse(kQwen2Config), "qwen/config.json");
  CHECK(qwen.architecture == Architecture::qwen2);
  CHECK(qwen.qkv_bias);  // Qwen2 always has q/k/v biases
  CHECK(!qwen.o_bias);
  CHECK(qwen.head_dim == 64);
  CHECK(qwen.rope_theta == 1000000.0);
  CHECK(!qwen.sliding_window);  // use_sliding_window is false
  json qwen_windowed = json::parse(kQwen2Config);
  qwen_windowed["use_sliding_window"] = true;
  qwen_windowed["max_window_layers"] = 20;
  ModelConfig windowed = parse_model_config(qwen_windowed, "qwen/config.json");
  REQUIRE(windowed.sliding_window.has_value());
  CHECK(*windowed.sliding_window == 32768);
  CHECK(!windowed.sliding_window_layers[19]);
  CHECK(windowed.sliding_window_layers[20]);  // layers from max_window_layers on use the window
  CHECK(!windowed.sliding_window_matters(4096));

  ModelConfig mistral = parse_model_config(json::parse(kMistralConfig), "mistral/config.json");
  CHECK(mistral.architecture == Architecture::mistral);
  REQUIRE(mistral.sliding_window.has_value());
  CHECK(*mistral.sliding_window == 4096);
  CHECK(mistral.sliding_window_layers[0]);
  CHECK(mistral.sliding_window_matters(4097));
  CHECK(!mistral.sliding_window_matters(4096));
}

TEST_CASE("config: transformers 5 spelling (rope_parameters, dtype) and defaults") {
  json document = json::parse(kLlama32Config);
  document.erase("rope_scaling");
  document.erase("rope_theta");
  document.erase("torch_dtype");
  document["dtype"] = "bfloat16";
  document["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                                 {"factor", 32.0},          {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  ModelConfig config = parse_model_config(document, "v5/config.json");
  CHECK(config.rope_theta == 500000.0);
  CHECK(config.rope_scaling.type == "llama3");
  CHECK(config.rope_scaling.original_max_position_embeddings == 8192);
  CHECK(config.torch_dtype == "bfloat16");
  // Written back in the same spelling.
  json written = to_json(config);
  CHECK(written.contains("rope_parameters"));
  CHECK(!written.contains("rope_scaling"));
  CHECK(written["rope_parameters"]["rope_theta"] == 500000.0);
  CHECK(written["dtype"] == "bfloat16");

  // Missing optional keys take transformers' defaults.
  json minimal = {{"architectures", {"LlamaForCausalLM"}},
                  {"hidden_size", 64},
                  {"intermediate_size", 128},
                  {"num_hidden_layers", 2},
                  {"num_attention_heads", 4},
                  {"vocab_size", 100}};
  ModelConfig small = parse_model_config(minimal, "minimal/config.json");
  CHECK(small.num_key_value_heads == 4);
  CHECK(small.head_dim == 16);
  CHECK(small.rope_theta == 10000.0);
  CHECK(small.rms_norm_eps == 1e-6);
  CHECK(small.max_position_embeddings == 2048);
  CHECK(!small.tie_word_embeddings);
  CHECK(!small.bos_token_id);
  CHECK(small.eos_token_ids.empty());
}

TEST_CASE("config: Qwen3 (saved by transformers) has q_norm/k_norm, head_dim apart from hidden / heads") {
  ModelConfig qwen3 = load_model_config(test::source_dir() / "tests/data/hf/qwen3");
  CHECK(qwen3.architecture == Architecture::qwen3);
  CHECK(qwen3.qk_norm);
  CHECK(qwen3.head_dim == 16);
  CHECK(qwen3.q_size() == 64);  // != hidden_size 32
  CHECK(!qwen3.qkv_bias);       // attention_bias false
  CHECK(!qwen3.sliding_window);
  ModelConfig again = parse_model_config(to_json(qwen3), "round trip");
  CHECK(again.architecture == Architecture::qwen3);
  CHECK(again.qk_norm);
  json biased = to_json(qwen3);
  biased["attention_bias"] = true;  // Qwen3Attention then has q/k/v and o_proj biases
  ModelConfig with_bias = parse_model_config(biased, "qwen3/config.json");
  CHECK(with_bias.qkv_bias);
  CHECK(with_bias.o_bias);
  CHECK(!load_model_config(test::source_dir() / "tests/data/hf/qwen2").qk_norm);
}

TEST_CASE("config: to_json round trips and keeps keys it does not model; save and load") {
  for (const char* text : {kTinyLlamaConfig, kLlama32Config, kQwen2Config, kMistralConfig}) {
    json original = json::parse(text);
    ModelConfig config = parse_model_config(original, "config.json");
    json written = to_json(config);
    ModelConfig again = parse_model_config(written, "written/config.json");
    CHECK(again.architecture == config.architecture);
    CHECK(again.hidden_size == config.hidden_size);
    CHECK(again.num_key_value_heads == config.num_key_value_heads);
    CHECK(again.head_dim == config.head_dim);
    CHECK(again.rope_theta == config.rope_theta);
    CHECK(again.rope_scaling.type == config.rope_scaling.type);
    CHECK(again.rope_scaling.factor == config.rope_scaling.factor);
    CHECK(again.eos_token_ids == config.eos_token_ids);
    CHECK(again.tie_word_embeddings == config.tie_word_embeddings);
    CHECK(again.sliding_window == config.sliding_window);
    CHECK(again.qkv_bias == config.qkv_bias);
    CHECK(written["initializer_range"] == original["initializer_range"]);        // unmodelled key kept
    CHECK(written["transformers_version"] == original["transformers_version"]);  // unmodelled key kept
  }
  // A config built in code gets the keys transformers needs.
  ModelConfig built;
  built.architecture = Architecture::qwen2;
  built.hidden_size = 64;
  built.intermediate_size = 128;
  built.num_hidden_layers = 2;
  built.num_attention_heads = 4;
  built.num_key_value_heads = 2;
  built.head_dim = 16;
  built.vocab_size = 300;
  built.max_position_embeddings = 512;
  built.qkv_bias = true;
  built.sliding_window_layers.assign(2, false);
  built.torch_dtype = "float32";
  fs::path dir = test::temp_dir("config_save");
  save_model_config(built, dir / "config.json");
  json saved = load_json(dir / "config.json");
  CHECK(saved["architectures"] == json::array({"Qwen2ForCausalLM"}));
  CHECK(saved["model_type"] == "qwen2");
  CHECK(saved["use_sliding_window"] == false);
  CHECK(saved["hidden_act"] == "silu");
  CHECK(saved["rope_scaling"].is_null());
  ModelConfig loaded = load_model_config(dir);
  CHECK(loaded.num_key_value_heads == 2);
  CHECK(loaded.qkv_bias);
  CHECK(loaded.torch_dtype == "float32");
}

TEST_CASE("config: unsupported or malformed configs are rejected naming the file and key") {
  auto error_for = [](json document) { return user_error_of([&] { parse_model_config(document, "m/config.json"); }); };
  json base = json::parse(kTinyLlamaConfig);

  json gpt2 = base;
  gpt2["architectures"] = {"GPT2LMHeadModel"};
  std::string message = error_for(gpt2);
  CHECK(message.find("m/config.json: architecture GPT2LMHeadModel is not supported") != std::string::npos);
  CHECK(message.find("LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM") != std::string::npos);

  json mlp_bias = base;
  mlp_bias["mlp_bias"] = true;
  CHECK(error_for(mlp_bias).find("\"mlp_bias\" is true: MLP projections with a bias are not supported") !=
        std::string::npos);

  json proportional = base;  // transformers 5's "proportional" (partial rotary proportions) is not supported
  proportional["rope_scaling"] = {{"rope_type", "proportional"}, {"factor", 4.0}};
  message = error_for(proportional);
  CHECK(message.find("\"rope_scaling\" has rope type \"proportional\"") != std::string::npos);
  CHECK(message.find("default, linear, dynamic, yarn, llama3") != std::string::npos);

  json incomplete_llama3 = base;
  incomplete_llama3["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  CHECK(error_for(incomplete_llama3).find("\"rope_scaling.low_freq_factor\" is missing") != std::string::npos);

  json no_hidden = base;
  no_hidden.erase("hidden_size");
  CHECK(error_for(no_hidden).find("m/config.json: \"hidden_size\" is missing") != std::string::npos);

  json bad_heads = base;
  bad_heads["num_key_value_heads"] = 5;
  CHECK(error_for(bad_heads).find("\"num_attention_heads\" (32) is not a multiple of num_key_value_heads (5)") !=
        std::string::npos);

  json string_size = base;
  string_size["hidden_size"] = "2048";
  CHECK(error_for(string_size).find("\"hidden_size\" must be an integer, got \"2048\"") != std::string::npos);

  json gelu = base;
  gelu["hidden_act"] = "gelu";
  CHECK(error_for(gelu).find("\"hidden_act\" is \"gelu\"") != std::string::npos);

  fs::path dir = test::temp_dir("config_errors");
  write_bytes(dir / "config.json", "{\"architectures\": [");
  message = user_error_of([&] { load_model_config(dir); });
  CHECK(message.find((dir / "config.json").string() + ": not valid JSON") != std::string::npos);
  CHECK(user_error_of([&] { load_model_config(dir / "missing"); }).find("no config.json") != std::string::npos);
}

TEST_CASE("config: sizes beyond sane limits and token ids outside the vocabulary are refused") {
  auto error_for = [](json document) { return user_error_of([&] { parse_model_config(document, "m/config.json"); }); };
  json base = json::parse(kTinyLlamaConfig);
  struct Case {
    const char* key;
    json value;
    const char* expected;  // in the message, after m/config.json: "KEY"
  };
  const Case cases[] = {
      {"num_hidden_layers", 1e9, "is 1000000000, above vktune's limit of 1024"},
      {"hidden_size", int64_t{1} << 40, "is 1099511627776, above vktune's limit of 65536"},
      {"intermediate_size", int64_t{1} << 30, "is 1073741824, above vktune's limit of 262144"},
      {"num_attention_heads", 1 << 20, "is 1048576, above vktune's limit of 1024"},
      {"num_key_value_heads", 1 << 20, "is 1048576, above vktune's limit of 1024"},
      {"head_dim", 1 << 20, "is 1048576, above vktune's limit of 1024"},
      {"vocab_size", int64_t{1} << 40, "is 1099511627776, above vktune's limit of 4194304"},
      {"max_position_embeddings", int64_t{1} << 40, "is 1099511627776, above vktune's limit"},
      {"num_hidden_layers", 1e30, "is out of range, got 1e+30"},
      {"num_hidden_layers", 18446744073709551615ull,
       "is out of range, got 18446744073709551615 (far beyond any real model's)"},
      {"rms_norm_eps", 2.0, "must be in (0, 1)"},
      {"rope_theta", -1.0, "must be positive"},
      {"bos_token_id", 32000, "is 32000, outside the vocabulary [0, 32000)"},
      {"eos_token_id", json::array({2, 40000}), "is 40000, outside the vocabulary [0, 32000)"},
      {"pad_token_id", -5, "is -5, outside the vocabulary"},
  };
  for (const Case& c : cases) {
    json document = base;
    document[c.key] = c.value;
    std::string message = error_for(document);
    CAPTURE(c.key);
    CAPTURE(message);
    CHECK(message.find(std::string("m/config.json: \"") + c.key + "\" " + c.expected) != std::string::npos);
    CHECK(message.find("HINT: ") != std::string::npos);
  }

  json scaling = base;
  scaling["rope_scaling"] = {{"rope_type", "llama3"},
                             {"factor", 8.0},
                             {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0},
                             {"original_max_position_embeddings", int64_t{1} << 40}};
  CHECK(error_for(scaling).find("\"rope_scaling.original_max_position_embeddings\" is 1099511627776, above") !=
        std::string::npos);
  scaling["rope_scaling"]["original_max_position_embeddings"] = 8192;
  scaling["rope_scaling"]["low_freq_factor"] = -2.0;
  CHECK(error_for(scaling).find("\"rope_scaling.low_freq_factor\" must be positive") != std::string::npos);

  json none_pad = base;  // old conversions' "no pad token"
  none_pad["pad_token_id"] = -1;
  CHECK_FALSE(parse_model_config(none_pad, "m/config.json").pad_token_id.has_value());
}

// Phi-3-mini-128k-instruct's config.json (transformers 4.x spelling: rope_scaling "type": "longrope"
// with 48 factors per set, the pretraining context at the top level).
const char* kPhi3MiniConfig =
    R"({"architectures": ["Phi3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 32000, "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "model_type": "phi3", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "original_max_position_embeddings": 4096, "pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": {"long_factor": [1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601, 1.5899999141693115, 1.600000023841858, 1.6200000047683716, 2.620000123977661, 3.2300000190734863, 3.2300000190734863, 4.789999961853027, 7.400000095367432, 7.700000286102295, 9.09000015258789, 12.199999809265137, 17.670000076293945, 24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523, 32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992, 50.340003967285156, 50.45000457763672, 57.55000305175781, 57.93000411987305, 58.21000289916992, 60.1400032043457, 62.61000442504883, 62.62000274658203, 62.71000289916992, 63.1400032043457, 63.1400032043457, 63.77000427246094, 63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688, 64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938, 64.4800033569336, 64.51000213623047, 64.52999877929688, 64.83999633789062], "short_factor": [1.0, 1.0199999809265137, 1.0299999713897705, 1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0699999332427979, 1.0999999046325684, 1.1099998950958252, 1.1599998474121094, 1.1599998474121094, 1.1699998378753662, 1.2899998426437378, 1.339999794960022, 1.679999828338623, 1.7899998426437378, 1.8199998140335083, 1.8499997854232788, 1.8799997568130493, 1.9099997282028198, 1.9399996995925903, 1.9899996519088745, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0799996852874756, 2.0899996757507324, 2.189999580383301, 2.2199995517730713, 2.5899994373321533, 2.729999542236328, 2.749999523162842, 2.8399994373321533], "type": "longrope"}, "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 32064})";

TEST_CASE("config: Phi-3 (fused projections, longrope) parses as transformers reads it; bad fields are named") {
  json document = json::parse(kPhi3MiniConfig);
  ModelConfig phi3 = parse_model_config(document, "phi3/config.json");
  CHECK(phi3.architecture == Architecture::phi3);
  CHECK(phi3.fused_projections());
  CHECK(phi3.head_dim == 96);
  CHECK(phi3.rope_scaling.type == "longrope");
  CHECK(phi3.rope_scaling.short_factor.size() == 48);
  CHECK(phi3.rope_scaling.long_factor.size() == 48);
  CHECK(phi3.rope_scaling.original_max_position_embeddings == 4096);
  // factor = 131072 / 4096 = 32; attention factor sqrt(1 + ln 32 / ln 4096) (transformers' default).
  CHECK(phi3.rope_scaling.attention_factor == doctest::Approx(std::sqrt(1 + std::log(32.0) / std::log(4096.0))));
  CHECK_FALSE(phi3.rope_uses_long_factors(4096));
  CHECK(phi3.rope_uses_long_factors(4097));
  CHECK(phi3.sliding_window == 262144);
  CHECK_FALSE(phi3.qkv_bias);
  // A round trip keeps the factor lists.
  CHECK(parse_model_config(to_json(phi3), "again").rope_scaling.long_factor == phi3.rope_scaling.long_factor);

  json su = document;  // Phi-3's older configs call it "su"; transformers reads it as longrope
  su["rope_scaling"]["type"] = "su";
  CHECK(parse_model_config(su, "su").rope_scaling.type == "longrope");
  json inner_original = document;  // the top-level original_max_position_embeddings wins, as in transformers
  inner_original["rope_scaling"]["original_max_position_embeddings"] = 2048;
  CHECK(parse_model_config(inner_original, "o").rope_scaling.original_max_position_embeddings == 4096);

  auto error_for = [](json d) { return user_error_of([&] { parse_model_config(d, "phi3/config.json"); }); };
  json partial = document;
  partial["partial_rotary_factor"] = 0.75;
  CHECK(error_for(partial).find("\"partial_rotary_factor\" is not 1") != std::string::npos);
  json partial_inner = document;
  partial_inner["rope_scaling"]["partial_rotary_factor"] = 0.75;
  CHECK(error_for(partial_inner).find("\"rope_scaling.partial_rotary_factor\" is not 1") != std::string::npos);
  json short_list = document;
  short_list["rope_scaling"]["short_factor"] = {1.0, 2.0};
  CHECK(error_for(short_list).find("\"rope_scaling.short_factor\" has 2 values; head_dim 96 needs 48") !=
        std::string::npos);
  json no_long = document;
  no_long["rope_scaling"].erase("long_factor");
  CHECK(error_for(no_long).find("\"rope_scaling.long_factor\" is missing") != std::string::npos);
  json linear = document;
  linear["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  CHECK(error_for(linear).find("Phi-3 uses default or longrope") != std::string::npos);
}

// ============================ RoPE frequencies ============================

TEST_CASE("config: rope_inv_freq matches transformers' fp32 init (torch golden values)") {
  // tests/data/rope/rope_reference.json comes from tests/reference/rope_reference.py (torch, with
  // modeling_rope_utils.py's expressions). theta^x here is correctly rounded; torch's CPU pow
  // (SLEEF powf, 1 ulp) rounds a few elements the other way, hence "within 1 ulp, mostly exact".
  // Everything after the pow is plain IEEE fp32 arithmetic, so apply_rope_scaling fed torch's own
  // unscaled frequencies must give torch's scaled ones bit for bit.
  json reference = load_json(test::source_dir() / "tests/data/rope/rope_reference.json");
  size_t total = 0, differing = 0;
  for (const auto& entry : reference["cases"]) {
    CAPTURE(entry["name"].get<std::string>());
    ModelConfig config;
    config.head_dim = entry["head_dim"];
    config.rope_theta = entry["rope_theta"];
    if (!entry["rope_scaling"].is_null()) {
      const json& scaling = entry["rope_scaling"];
      config.rope_scaling.type = scaling["rope_type"];
      config.rope_scaling.factor = scaling["factor"];
      if (config.rope_scaling.type == "llama3") {
        config.rope_scaling.low_freq_factor = scaling["low_freq_factor"];
        config.rope_scaling.high_freq_factor = scaling["high_freq_factor"];
        config.rope_scaling.original_max_position_embeddings = scaling["original_max_position_embeddings"];
      }
    }
    std::vector<uint32_t> default_bits = entry["default_bits"], scaled_bits = entry["scaled_bits"];
    std::vector<float> ours = rope_inv_freq(config);
    REQUIRE(ours.size() == scaled_bits.size());
    for (size_t i = 0; i < ours.size(); i++) {
      int64_t ulps = std::llabs(static_cast<int64_t>(float_bits(ours[i])) - static_cast<int64_t>(scaled_bits[i]));
      CAPTURE(i);
      CHECK(ulps <= 1);
      total++;
      differing += ulps != 0;
    }
    std::vector<float> torch_default(default_bits.size());
    for (size_t i = 0; i < default_bits.size(); i++) torch_default[i] = bits_float(default_bits[i]);
    std::vector<float> scaled = apply_rope_scaling(torch_default, config.rope_scaling);
    for (size_t i = 0; i < scaled.size(); i++) {
      CAPTURE(i);
      CHECK(float_bits(scaled[i]) == scaled_bits[i]);
    }
  }
  MESSAGE("rope_inv_freq: " << differing << " of " << total << " values differ from torch by 1 ulp");
  CHECK(differing * 20 < total);  // at most a few percent
  // Two values that need no reference: inv_freq[0] = 1/theta^0 = 1; for head_dim 4 and
  // theta 10000, inv_freq[1] = 1/10000^0.5 = 0.01 (rounded to fp32).
  ModelConfig small;
  small.head_dim = 4;
  small.rope_theta = 10000.0;
  std::vector<float> values = rope_inv_freq(small);
  CHECK(values[0] == 1.0f);
  CHECK(values[1] == 1.0f / 100.0f);
}

}  // TEST_SUITE
