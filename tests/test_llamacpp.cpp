// llama.cpp loads vktune's GGUF exports and agrees with vktune (issue 16): llama.cpp runs through
// the npm package node-llama-cpp 3.22.1 (its prebuilt CPU build), driven by tests/llamacpp/llama.mjs.
//   f32 / f16 model exports of examples/base       greedy tokens equal vktune's generate
//   a GGUF LoRA (rsLoRA, all linear) on its base   greedy tokens equal vktune's with the PEFT adapter
//   bf16 / q8_0 / q4_0 / q4_k_m exports             top-1 agreement >= 95% over 64 teacher-forced
//                                                   positions, both reading the SAME quantized file
//   the LoRA as f16 / bf16 / q8_0                   top-1 agreement >= 95% likewise
//   a LoRA trained on a q4_k_m export, and merged   top-1 agreement >= 95% likewise
// Optional: without the package (scripts/setup-llamacpp.sh installs it into
// $VKT_NODE_LLAMA_CPP, default ~/.cache/vktune/node-llama-cpp) or node, the suite prints
// "SKIPPED: node-llama-cpp is not installed" and ctest reports it skipped (label llamacpp).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "engine/merge/gguf_export.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/gguf.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "tests/random_adapter.hpp"
#include "tests/support.hpp"

using namespace vkt;
namespace fs = std::filesystem;

namespace {

// Genesis 1:1-5, teacher-forced text for the quantized comparisons.
constexpr const char* kText =
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
    "darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God "
    "said, Let there be light: and there was light. And God saw the light, that it was good: and God divided "
    "the light from the darkness.";

fs::path base_model() { return test::source_dir() / "examples" / "base"; }

fs::path node_package() {
  if (const char* dir = std::getenv("VKT_NODE_LLAMA_CPP")) return dir;
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/root") / ".cache" / "vktune" / "node-llama-cpp";
}

bool llama_cpp_available() {
  if (!fs::exists(node_package() / "node_modules" / "node-llama-cpp" / "package.json")) return false;
  return test::run_command("node --version").first == 0;
}

std::string join(const std::vector<uint32_t>& ids) {
  std::string text;
  for (uint32_t id : ids) text += (text.empty() ? "" : ",") + std::to_string(id);
  return text;
}

// llama.mjs's ids for `arguments` ("greedy MODEL LORA N IDS" or "top1 MODEL LORA IDS").
std::vector<uint32_t> llama_cpp(const std::string& arguments) {
  const std::string command = "VKT_NODE_LLAMA_CPP='" + node_package().string() + "' node '" +
                              (test::source_dir() / "tests" / "llamacpp" / "llama.mjs").string() + "' " + arguments;
  const auto result = test::run_command(command);  // no structured binding under INFO (clang 14)
  const std::string& output = result.second;
  INFO(command);
  INFO(output);
  REQUIRE(result.first == 0);
  const size_t line = output.rfind("{\"ids\"");
  REQUIRE(line != std::string::npos);
  return nlohmann::json::parse(output.substr(line, output.find('\n', line) - line))["ids"].get<std::vector<uint32_t>>();
}

model::Generator vktune_generator(const fs::path& model, const std::optional<fs::path>& adapter = std::nullopt) {
  model::GeneratorOptions options;
  options.model = model;
  options.adapter = adapter;
  options.max_tokens = 256;
  return model::Generator(test::context(), options);
}

// vktune's greedy continuation, without the stop token (llama.mjs includes it: dropped there).
std::vector<uint32_t> vktune_greedy(model::Generator& generator, const std::vector<uint32_t>& prompt, uint32_t count,
                                    uint32_t eos) {
  model::SamplingOptions sampling;
  sampling.max_new_tokens = count;
  sampling.stop_ids = {eos};
  return generator.generate(prompt, sampling);
}

// vktune's argmax next token after each prefix ids[0..k], k = 0 .. ids.size() - 1.
std::vector<uint32_t> vktune_top1(model::Generator& generator, const std::vector<uint32_t>& ids) {
  model::SamplingOptions sampling;
  sampling.max_new_tokens = 1;
  std::vector<uint32_t> top1;
  for (size_t k = 1; k <= ids.size(); k++)
    top1.push_back(generator.generate(std::vector<uint32_t>(ids.begin(), ids.begin() + k), sampling).at(0));
  return top1;
}

fs::path export_model(const fs::path& directory, merge::GgufOutType type) {
  merge::GgufExportOptions options;
  options.model = base_model();
  options.output = directory / ("base." + std::string(merge::gguf_outtype_name(type)) + ".gguf");
  options.outtype = type;
  options.show_progress = false;
  merge::export_gguf_model(nullptr, options);
  return options.output;
}

}  // namespace

TEST_SUITE("llamacpp") {
TEST_CASE("llama.cpp's own llama-quantize makes the same Q4_K_M / Q8_0 / Q4_0 files as our export") {
  // Optional: VKT_LLAMA_QUANTIZE names a llama-quantize binary, e.g. built from the pinned sdist:
  //   cmake -S .../vendor/llama.cpp -B lcp -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF &&
  //   cmake --build lcp --target llama-quantize   (GGML_NATIVE=OFF: no FMA contraction in the quantizers)
  const char* quantize = std::getenv("VKT_LLAMA_QUANTIZE");
  if (!quantize || !fs::exists(quantize)) {
    std::printf("llama-quantize comparison not run: VKT_LLAMA_QUANTIZE names no binary\n");
    return;
  }
  const fs::path directory = test::temp_dir("llama-quantize");
  const fs::path f32 = export_model(directory, merge::GgufOutType::f32);
  for (const auto& pair : {std::pair{merge::GgufOutType::q4_k_m, "Q4_K_M"}, std::pair{merge::GgufOutType::q8_0, "Q8_0"},
                           std::pair{merge::GgufOutType::q4_0, "Q4_0"}}) {
    const std::string name = pair.second;
    CAPTURE(name);
    const fs::path ours = export_model(directory, pair.first),
                   theirs = directory / ("llama-quantize." + name + ".gguf");
    const auto result = test::run_command("'" + std::string(quantize) + "' '" + f32.string() + "' '" + theirs.string() +
                                          "' " + name + " 2");
    const std::string& output = result.second;
    INFO(output);
    REQUIRE(result.first == 0);
    model::GgufFile a(ours), b(theirs);
    REQUIRE(a.tensors().size() == b.tensors().size());
    size_t equal = 0;
    for (const model::GgufTensor& tensor : a.tensors()) {
      const model::GgufTensor& other = b.tensor(tensor.name);
      equal += tensor.type == other.type &&
               std::equal(tensor.bytes.begin(), tensor.bytes.end(), other.bytes.begin(), other.bytes.end());
    }
    std::printf("llama-quantize %s: %zu / %zu tensors byte-identical to vktune's export\n", name.c_str(), equal,
                a.tensors().size());
    CHECK(equal == a.tensors().size());
  }
}

TEST_CASE("llama.cpp (node-llama-cpp 3.22.1) loads vktune's GGUF exports and agrees with vktune") {
  if (!llama_cpp_available()) {
    std::printf(
        "SKIPPED: node-llama-cpp is not installed in %s (or node is missing); scripts/setup-llamacpp.sh "
        "installs it\n",
        node_package().string().c_str());
    return;
  }
  const fs::path directory = test::temp_dir("llamacpp");
  const text::Tokenizer tokenizer = model::load_model_tokenizer(base_model());
  const uint32_t eos = *tokenizer.eos_id();
  const std::vector<uint32_t> prompt = tokenizer.encode("And God said", true);
  auto drop_eos = [&](std::vector<uint32_t> ids) {
    if (!ids.empty() && ids.back() == eos) ids.pop_back();
    return ids;
  };

  SUBCASE("greedy tokens of f32 / f16 exports equal vktune's") {
    for (merge::GgufOutType type : {merge::GgufOutType::f32, merge::GgufOutType::f16}) {
      CAPTURE(merge::gguf_outtype_name(type));
      const fs::path file = export_model(directory, type);
      auto generator = vktune_generator(file);
      const std::vector<uint32_t> ours = vktune_greedy(generator, prompt, 32, eos);
      const std::vector<uint32_t> theirs = drop_eos(llama_cpp("greedy '" + file.string() + "' - 32 " + join(prompt)));
      std::printf("llamacpp %s greedy: vktune %s | llama.cpp %s\n", merge::gguf_outtype_name(type), join(ours).c_str(),
                  join(theirs).c_str());
      CHECK(ours.size() >= 8);
      CHECK(theirs == ours);
    }
  }

  SUBCASE("a GGUF LoRA on its base: greedy tokens equal vktune's with the PEFT adapter") {
    const std::vector<spec::Module> all = {spec::Module::q_proj,   spec::Module::k_proj,    spec::Module::v_proj,
                                           spec::Module::o_proj,   spec::Module::gate_proj, spec::Module::up_proj,
                                           spec::Module::down_proj};
    // Small random factors (±0.2, rsLoRA alpha 2 at r 8): enough to change the text, not to wreck it.
    const fs::path adapter = test::random_adapter(base_model(), "llamacpp", 8, 2.0f, true, all, 21);
    const fs::path base = export_model(directory, merge::GgufOutType::f32);
    merge::GgufLoraExportOptions options;
    options.adapter = adapter;
    options.model = base_model();
    options.output = directory / "adapter.f32.gguf";
    options.outtype = merge::GgufOutType::f32;
    merge::export_gguf_lora(options);
    auto plain = vktune_generator(base);
    auto adapted = vktune_generator(base, adapter);
    const std::vector<uint32_t> without = vktune_greedy(plain, prompt, 32, eos);
    const std::vector<uint32_t> ours = vktune_greedy(adapted, prompt, 32, eos);
    const std::vector<uint32_t> theirs =
        drop_eos(llama_cpp("greedy '" + base.string() + "' '" + options.output.string() + "' 32 " + join(prompt)));
    std::printf("llamacpp lora greedy: vktune %s | llama.cpp %s | base alone %s\n", join(ours).c_str(),
                join(theirs).c_str(), join(without).c_str());
    CHECK(ours != without);  // the adapter matters, so an ignored one would fail
    CHECK(theirs == ours);

    // The adapter written as f16 / bf16 / q8_0: rounded factors, so top-1 agreement on the text.
    std::vector<uint32_t> ids = tokenizer.encode(kText, true);
    ids.resize(64);
    const std::vector<uint32_t> ours_top1 = vktune_top1(adapted, ids);
    for (merge::GgufOutType type : {merge::GgufOutType::f16, merge::GgufOutType::bf16, merge::GgufOutType::q8_0}) {
      CAPTURE(merge::gguf_outtype_name(type));
      options.outtype = type;
      options.output = directory / ("adapter." + std::string(merge::gguf_outtype_name(type)) + ".gguf");
      merge::export_gguf_lora(options);
      const std::vector<uint32_t> theirs_top1 =
          llama_cpp("top1 '" + base.string() + "' '" + options.output.string() + "' " + join(ids));
      REQUIRE(theirs_top1.size() == ours_top1.size());
      size_t agree = 0;
      for (size_t i = 0; i < ours_top1.size(); i++) agree += ours_top1[i] == theirs_top1[i];
      std::printf("llamacpp %s lora top-1 agreement: %zu / %zu\n", merge::gguf_outtype_name(type), agree,
                  ours_top1.size());
      CHECK(agree * 100 >= 95 * ours_top1.size());
    }
  }

  SUBCASE("a LoRA trained on a Q4_K_M export (train --save-gguf-lora): llama.cpp agrees with it on that base") {
    // The README's "Finetune your GGUF" flow: Q4_K_M file -> vktune train -> adapter.gguf -> llama.cpp.
    const fs::path quantized = export_model(directory, merge::GgufOutType::q4_k_m);
    const fs::path run = directory / "run";
    const std::string train = "'" + (test::binary_dir() / "vktune").string() + "' train --model '" +
                              quantized.string() + "' --data '" +
                              (test::source_dir() / "examples/demo/train.jsonl").string() + "' --output-dir '" +
                              run.string() + "' --max-steps 12 --learning-rate 2e-3 --save-gguf-lora f32 --headless";
    const auto result = test::run_command(train);
    const std::string& output = result.second;
    INFO(output);
    REQUIRE(result.first == 0);
    REQUIRE(fs::exists(run / "adapter.gguf"));
    std::vector<uint32_t> ids = tokenizer.encode(
        "Ge1:3 And God said, Let there be light: and there was light.\nJSON: {\"book\": \"Ge\", \"chapter\": 1, "
        "\"verse\": 3, \"first\": \"And\", \"last\": \"light\"} Ex3:14 And God said unto Moses, I AM THAT I AM",
        true);
    REQUIRE(ids.size() >= 64);
    ids.resize(64);
    auto adapted = vktune_generator(quantized, run);
    auto plain = vktune_generator(quantized);
    const std::vector<uint32_t> ours = vktune_top1(adapted, ids), base = vktune_top1(plain, ids);
    const std::vector<uint32_t> theirs =
        llama_cpp("top1 '" + quantized.string() + "' '" + (run / "adapter.gguf").string() + "' " + join(ids));
    REQUIRE(theirs.size() == ours.size());
    size_t agree = 0, changed = 0;
    for (size_t i = 0; i < ours.size(); i++) {
      agree += ours[i] == theirs[i];
      changed += ours[i] != base[i];
    }
    std::printf("llamacpp trained LoRA on q4_k_m: top-1 agreement %zu / %zu (the adapter changes %zu of them)\n", agree,
                ours.size(), changed);
    CHECK(changed > 0);
    CHECK(agree * 100 >= 95 * ours.size());

    // The same adapter merged into a new Q4_K_M file (from the Q4_K_M base): llama.cpp and vktune on it.
    merge::GgufExportOptions merged;
    merged.model = quantized;
    merged.adapter = run;
    merged.output = directory / "merged.q4_k_m.gguf";
    merged.outtype = merge::GgufOutType::q4_k_m;
    merged.show_progress = false;
    merge::export_gguf_model(&test::context(), merged);
    auto merged_generator = vktune_generator(merged.output);
    const std::vector<uint32_t> ours_merged = vktune_top1(merged_generator, ids);
    const std::vector<uint32_t> theirs_merged = llama_cpp("top1 '" + merged.output.string() + "' - " + join(ids));
    REQUIRE(theirs_merged.size() == ours_merged.size());
    size_t agree_merged = 0, as_adapter = 0;
    for (size_t i = 0; i < ours_merged.size(); i++) {
      agree_merged += ours_merged[i] == theirs_merged[i];
      as_adapter += ours_merged[i] == ours[i];
    }
    std::printf("llamacpp merged q4_k_m export: top-1 agreement %zu / %zu (%zu / %zu as the adapter on the base)\n",
                agree_merged, ours_merged.size(), as_adapter, ours.size());
    CHECK(agree_merged * 100 >= 95 * ours_merged.size());
  }

  SUBCASE("quantized exports: top-1 agreement >= 95% over 64 teacher-forced positions on the same file") {
    std::vector<uint32_t> ids = tokenizer.encode(kText, true);
    REQUIRE(ids.size() >= 64);
    ids.resize(64);
    for (merge::GgufOutType type :
         {merge::GgufOutType::bf16, merge::GgufOutType::q8_0, merge::GgufOutType::q4_0, merge::GgufOutType::q4_k_m}) {
      CAPTURE(merge::gguf_outtype_name(type));
      const fs::path file = export_model(directory, type);
      auto generator = vktune_generator(file);
      const std::vector<uint32_t> ours = vktune_top1(generator, ids);
      const std::vector<uint32_t> theirs = llama_cpp("top1 '" + file.string() + "' - " + join(ids));
      REQUIRE(theirs.size() == ours.size());
      size_t agree = 0;
      for (size_t i = 0; i < ours.size(); i++) agree += ours[i] == theirs[i];
      std::printf("llamacpp %s top-1 agreement: %zu / %zu\n", merge::gguf_outtype_name(type), agree, ours.size());
      CHECK(agree * 100 >= 95 * ours.size());
    }
  }
}
}
