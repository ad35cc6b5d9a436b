// RoPE scaling (linear, llama3, yarn, dynamic) against transformers' own ROPE_INIT_FUNCTIONS:
// tests/data/rope/rope_scaling_golden.json from tests/reference/rope_scaling_golden.py. The logits,
// LoRA gradients and generation of a tiny Llama with yarn RoPE are hf_golden.py's "llama_yarn"
// family (test_model_golden_hf.cpp).
#include <doctest/doctest.h>

#include <bit>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "engine/model/config.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"

using namespace vkt;
using nlohmann::json;

namespace {

json llama_config(const json& entry, const json& rope_parameters) {
  const int64_t head_dim = entry["head_dim"];
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", head_dim * 4},
          {"intermediate_size", 64},
          {"num_hidden_layers", 1},
          {"num_attention_heads", 4},
          {"head_dim", head_dim},
          {"vocab_size", 128},
          {"max_position_embeddings", entry["max_position_embeddings"]},
          {"rope_parameters", rope_parameters}};
}

// Distance in ulps between two positive fp32 values.
int64_t ulps(float a, uint32_t expected_bits) {
  return std::llabs(static_cast<int64_t>(std::bit_cast<uint32_t>(a)) - static_cast<int64_t>(expected_bits));
}

}  // namespace

TEST_SUITE("model_io") {
TEST_CASE("rope scaling: inv_freq and attention scaling match transformers' ROPE_INIT_FUNCTIONS") {
  // torch's pow is 1-ulp (SLEEF), ours correctly rounded; dynamic feeds a pow'ed base into another
  // pow, so a difference in the base can grow to a few ulp in the frequencies: bound 4 ulp.
  const json golden = test::load_json(test::source_dir() / "tests/data/rope/rope_scaling_golden.json");
  int types_seen = 0;
  for (const json& entry : golden["cases"]) {
    const std::string name = entry["name"];
    CAPTURE(name);
    const model::ModelConfig config =
        model::parse_model_config(llama_config(entry, entry["rope_parameters"]), name + "/config.json");
    const int64_t positions = entry["seq_len"].is_null() ? 0 : entry["seq_len"].get<int64_t>();
    const std::vector<uint32_t> expected = entry["inv_freq_bits"];
    const std::vector<float> ours = model::rope_inv_freq(config, false, positions);
    REQUIRE(ours.size() == expected.size());
    int64_t worst = 0;
    for (size_t i = 0; i < ours.size(); i++) worst = std::max(worst, ulps(ours[i], expected[i]));
    CHECK(worst <= 4);
    const double attention = entry["attention_scaling"];
    CHECK(config.rope_scaling.attention_factor == doctest::Approx(attention).epsilon(1e-12));
    // What transformers saves reads back to the same frequencies, and so does what vktune writes.
    const model::ModelConfig saved =
        model::parse_model_config(llama_config(entry, entry["saved_rope_parameters"]), name + "/saved");
    const json written = model::to_json(saved);
    const model::ModelConfig again = model::parse_model_config(written, name + "/written");
    CHECK(model::rope_inv_freq(again, false, positions) == ours);
    CHECK(again.rope_scaling.attention_factor == config.rope_scaling.attention_factor);
    REQUIRE(written.contains("rope_parameters"));
    CHECK(written["rope_parameters"]["rope_type"] == entry["rope_parameters"]["rope_type"]);
    types_seen++;
  }
  CHECK(types_seen == 13);
}

TEST_CASE("rope scaling: dynamic keeps the default frequencies up to max_position_embeddings") {
  json document = {{"architectures", {"LlamaForCausalLM"}},
                   {"hidden_size", 32},
                   {"intermediate_size", 64},
                   {"num_hidden_layers", 1},
                   {"num_attention_heads", 4},
                   {"vocab_size", 128},
                   {"max_position_embeddings", 256},
                   {"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 4.0}}}};
  const model::ModelConfig dynamic = model::parse_model_config(document, "config.json");
  document.erase("rope_scaling");
  const model::ModelConfig plain = model::parse_model_config(document, "config.json");
  CHECK(model::rope_inv_freq(dynamic, false, 256) == model::rope_inv_freq(plain));
  CHECK(model::rope_inv_freq(dynamic, false, 257) != model::rope_inv_freq(plain));
  // A missing factor is an error naming the field.
  document["rope_scaling"] = {{"rope_type", "dynamic"}};
  CHECK(test::user_error_of([&] { model::parse_model_config(document, "config.json"); }).find("rope_scaling.factor") !=
        std::string::npos);
}
}  // TEST_SUITE
