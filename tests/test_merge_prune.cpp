// `vktune prune`: the masks against Wanda's own selection code (tests/reference/prune_golden.py ->
// tests/data/prune/prune_golden.json), and the pruned folder of a tiny model (magnitude, wanda with
// calibration activations from a forward, 2:4).
#include <doctest/doctest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/merge/prune.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/train/calibration.hpp"
#include "tests/model_io_support.hpp"
#include "tests/support.hpp"
#include "tests/tiny_model.hpp"

using namespace vkt;
using nlohmann::json;

namespace {

std::vector<float> read_fp32(const model::SafetensorsFile& file, const std::string& name) {
  const model::TensorView& view = file.tensor(name);
  std::vector<float> values(view.element_count());
  model::convert_to_fp32(view, values);
  return values;
}

const char* const kLinear[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                               "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

}  // namespace

TEST_SUITE("merge") {
TEST_CASE("prune: masks match Wanda's reference selection (magnitude, wanda, 2:4 by |W| and by wanda)") {
  const json golden = test::load_json(test::source_dir() / "tests/data/prune/prune_golden.json");
  const int64_t rows = golden["rows"], cols = golden["cols"];
  const std::vector<float> weight = golden["weight"], inputs = golden["inputs"];
  const double sparsity = golden["sparsity"];
  std::vector<float> norms(static_cast<size_t>(cols), 0.0f);  // ‖X_j‖₂ over the tokens
  for (size_t j = 0; j < norms.size(); j++) {
    double sum = 0;
    for (size_t t = 0; t < inputs.size() / norms.size(); t++)
      sum += double(inputs[t * norms.size() + j]) * inputs[t * norms.size() + j];
    norms[j] = static_cast<float>(std::sqrt(sum));
  }
  struct Case {
    const char* name;
    merge::PruneMethod method;
    bool calibrated;
  };
  for (const Case& c :
       {Case{"wanda", merge::PruneMethod::wanda, true}, Case{"wanda_2_4", merge::PruneMethod::two_four, true},
        Case{"magnitude_2_4", merge::PruneMethod::two_four, false},
        Case{"magnitude", merge::PruneMethod::magnitude, false}}) {
    CAPTURE(c.name);
    const std::vector<uint8_t> expected = golden["masks"][c.name];
    const std::vector<uint8_t> mask =
        merge::prune_mask(weight, rows, cols, c.method, sparsity,
                          c.calibrated ? std::span<const float>(norms) : std::span<const float>());
    CHECK(mask == expected);
  }
  // Wanda and magnitude really differ here (the norms span 10x), so the norms are used.
  CHECK(std::vector<uint8_t>(golden["masks"]["wanda"]) !=
        merge::prune_mask(weight, rows, cols, merge::PruneMethod::wanda, sparsity, std::vector<float>(cols, 1.0f)));
  CHECK(test::user_error_of([&] {
          merge::prune_mask(weight, rows, cols, merge::PruneMethod::wanda, 0.5);
        }).find("calibration") != std::string::npos);
}

TEST_CASE("prune: a tiny model pruned by magnitude, wanda (calibrated by a forward) and 2:4") {
  const std::filesystem::path root = test::temp_dir("prune");
  const std::filesystem::path base = test::tiny_model(
      root / "base", {.hidden = 32, .layers = 2, .heads = 4, .kv_heads = 2, .intermediate = 64, .seed = 5});
  const std::filesystem::path data = test::tiny_dataset(root / "calibration.jsonl", 8);
  const merge::ColumnNorms norms = train::calibration_column_norms(test::context(), base, data, 64, 4);
  REQUIRE(norms.size() == 2 * 7);
  // q/k/v share their input; every norm is finite and positive.
  CHECK(norms.at("model.layers.1.self_attn.q_proj.weight") == norms.at("model.layers.1.self_attn.v_proj.weight"));
  for (const auto& entry : norms)
    for (float value : entry.second) CHECK((std::isfinite(value) && value > 0));
  model::SafetensorsFile original(base / "model.safetensors");
  for (const char* method : {"magnitude", "wanda", "2:4"}) {
    CAPTURE(method);
    merge::PruneOptions options;
    options.model = base;
    options.output = root / (std::string("pruned-") + (method[0] == '2' ? "24" : method));
    options.method = merge::prune_method_from_flag(method);
    options.sparsity = 0.5;
    const merge::PruneSummary summary =
        merge::prune_model(options, options.method == merge::PruneMethod::magnitude ? merge::ColumnNorms{} : norms);
    CHECK(summary.tensors.size() == 14);
    CHECK(summary.zeros * 2 == summary.elements);
    model::SafetensorsFile pruned(options.output / "model.safetensors");
    for (const model::TensorView& view : original.tensors()) {
      const std::string name = view.name;
      CAPTURE(name);
      const std::vector<float> before = read_fp32(original, name), after = read_fp32(pruned, name);
      bool linear = false;
      for (const char* module : kLinear) linear = linear || name.find(module) != std::string::npos;
      if (!linear) {
        CHECK(after == before);
        continue;
      }
      const auto cols = static_cast<size_t>(view.shape[1]);
      for (size_t r = 0; r < view.shape[0]; r++) {
        size_t zeros = 0;
        for (size_t c = 0; c < cols; c++) {
          const float value = after[r * cols + c];
          zeros += value == 0.0f;
          if (value != 0.0f) CHECK(value == before[r * cols + c]);  // kept weights are unchanged
        }
        if (options.method != merge::PruneMethod::magnitude) CHECK(zeros * 2 == cols);  // per row
        if (options.method == merge::PruneMethod::two_four)
          for (size_t c = 0; c < cols; c += 4)
            CHECK(int(after[r * cols + c] == 0) + int(after[r * cols + c + 1] == 0) +
                      int(after[r * cols + c + 2] == 0) + int(after[r * cols + c + 3] == 0) ==
                  2);
      }
    }
    const json record = test::load_json(options.output / "pruning.json");
    CHECK(record["method"] == method);
    CHECK(record["tensors"].size() == 14);
    CHECK(std::filesystem::exists(options.output / "config.json"));
    CHECK(std::filesystem::exists(options.output / "tokenizer.json"));
  }
  merge::PruneOptions bad;
  bad.model = base;
  bad.output = root / "bad";
  bad.method = merge::PruneMethod::two_four;
  bad.sparsity = 0.3;
  CHECK(test::user_error_of([&] { merge::prune_model(bad, {}); }).find("2:4") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(bad.output));
}
}  // TEST_SUITE
