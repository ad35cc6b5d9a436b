// GGUF out: the writer read back by our reader (every metadata type, every writable tensor type),
// atomic writes, and the exports (engine/merge/gguf_export.hpp): a model file whose tensors,
// config and tokenizer read back as the source's, the Q4_K_M type mix, a merged adapter, and LoRA
// adapters in llama.cpp's layout. llama.cpp itself loads these files in tests/test_llamacpp.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <type_traits>
#include <variant>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/export.hpp"
#include "engine/merge/gguf_export.hpp"
#include "engine/model/gguf_metadata_out.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/model/gguf_writer.hpp"
#include "engine/model/safetensors.hpp"
#include "engine/model/session.hpp"
#include "tests/model_io_support.hpp"
#include "tests/random_adapter.hpp"
#include "tests/support.hpp"

using namespace vkt;
using quant::GgmlType;
namespace fs = std::filesystem;

namespace {

fs::path base_model() { return test::source_dir() / "examples" / "base"; }

size_t entries_in(const fs::path& directory) {
  size_t count = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(directory)) count++;
  return count;
}

// HF row h*d + s*d/2 + j sits at GGUF row h*d + 2j + s (llama.cpp's LlamaModel.permute), written out
// here independently of the exporter's permute_qk_rows.
std::vector<float> llama_cpp_rows(const std::vector<float>& values, uint64_t rows, uint64_t heads) {
  const uint64_t cols = values.size() / rows, d = rows / heads;
  std::vector<float> out(values.size());
  for (uint64_t row = 0; row < rows; row++) {
    const uint64_t h = row / d, within = row % d, s = within / (d / 2), j = within % (d / 2);
    std::copy_n(values.begin() + row * cols, cols, out.begin() + (h * d + 2 * j + s) * cols);
  }
  return out;
}

// Two metadata values of the same type and contents (arrays element by element).
void check_same_value(const model::GgufValue& a, const model::GgufValue& b) {
  CHECK(a.type == b.type);
  CHECK(a.element_type == b.element_type);
  REQUIRE(a.value.index() == b.value.index());
  if (const auto* elements = std::get_if<std::vector<model::GgufValue>>(&a.value)) {
    const auto& others = std::get<std::vector<model::GgufValue>>(b.value);
    REQUIRE(elements->size() == others.size());
    for (size_t i = 0; i < elements->size(); i++) check_same_value((*elements)[i], others[i]);
  } else {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (!std::is_same_v<T, std::vector<model::GgufValue>>) CHECK(x == std::get<T>(b.value));
        },
        a.value);
  }
}

// tests/data/hf/<family> with the byte-level tokenizer gguf_model_golden.py gave llama.cpp's converter
// (config vocab_size widened to the tokenizer's, bos/eos named, a chat template for qwen2).
fs::path family_with_tokenizer(const std::string& family, const std::string& bos, const std::string& eos,
                               const std::string& chat_template) {
  const fs::path directory = test::temp_dir("gguf-family-" + family),
                 hf = test::source_dir() / "tests/data/hf" / family;
  const fs::path tokenizer = test::source_dir() / "tests/data/tokenizers" / ("bytelevel_" + family + ".json");
  nlohmann::json config = nlohmann::json::parse(read_text_file(hf / "config.json"));
  config["vocab_size"] =
      model::load_model_tokenizer(tokenizer.parent_path() / ("bytelevel_" + family + ".json")).vocab_size();
  write_file_atomically(directory / "config.json", config.dump(2));
  fs::copy_file(hf / "model.safetensors", directory / "model.safetensors");
  fs::copy_file(tokenizer, directory / "tokenizer.json");
  nlohmann::json tokenizer_config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                                     {"bos_token", bos.empty() ? nlohmann::json() : nlohmann::json(bos)},
                                     {"eos_token", eos}};
  if (!chat_template.empty()) tokenizer_config["chat_template"] = chat_template;
  write_file_atomically(directory / "tokenizer_config.json", tokenizer_config.dump(2));
  return directory;
}

merge::GgufExportSummary export_base(const fs::path& out, merge::GgufOutType type,
                                     const std::optional<fs::path>& adapter = std::nullopt) {
  merge::GgufExportOptions options;
  options.model = base_model();
  options.adapter = adapter;
  options.output = out;
  options.outtype = type;
  options.show_progress = false;
  return merge::export_gguf_model(adapter ? &test::context() : nullptr, options);
}

}  // namespace

TEST_SUITE("model_io") {
TEST_CASE("gguf writer: metadata of every type and tensors of every writable type read back") {
  const fs::path path = test::temp_dir("gguf-writer") / "all.gguf";
  model::GgufWriter writer;
  writer.set_string("general.architecture", "llama");
  writer.set_string("test.string", "héllo 🙂");
  writer.set_bool("test.bool", true);
  writer.set_uint32("test.u32", 4000000000u);
  writer.set_int32("test.i32", -5);
  writer.set_float32("test.f32", 0.25);
  writer.set_string_array("test.strings", {"a", "", "<|im_start|>"});
  writer.set_int32_array("test.i32s", {1, -2, 3});
  writer.set_float32_array("test.f32s", {0.5, -1.5});
  writer.set_uint32("test.u32", 7);  // set twice: the new value, the first place
  const std::vector<float> source = test::random_floats(4 * 512, 11, -0.3f, 0.3f);
  const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                            GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q6_K};
  for (GgmlType type : types)
    writer.add_tensor(std::string("t.") + quant::ggml_type_name(type), type, {4, 512}, [&] { return source; });
  writer.add_tensor("vector", GgmlType::F32, {3}, [] { return std::vector<float>{1, 2, 3}; });
  writer.write(path);
  CHECK(entries_in(path.parent_path()) == 1);  // no temporary file left

  model::GgufFile file(path);
  CHECK(file.version() == 3);
  CHECK(file.get_string("test.string") == "héllo 🙂");
  CHECK(file.get_bool("test.bool"));
  CHECK(file.get_uint("test.u32") == 7);
  CHECK(file.find("test.u32")->type == model::GgufValueType::UINT32);
  CHECK(file.get_int("test.i32") == -5);
  CHECK(file.get_float("test.f32") == 0.25);
  CHECK(file.get_string_array("test.strings") == std::vector<std::string>{"a", "", "<|im_start|>"});
  CHECK(file.get_int_array("test.i32s") == std::vector<int64_t>{1, -2, 3});
  CHECK(file.get_float_array("test.f32s") == std::vector<double>{0.5, -1.5});
  CHECK(file.metadata().size() == 9);
  for (GgmlType type : types) {
    CAPTURE(quant::ggml_type_name(type));
    const model::GgufTensor& tensor = file.tensor(std::string("t.") + quant::ggml_type_name(type));
    CHECK(tensor.type == type);
    CHECK(tensor.shape() == std::vector<uint64_t>{4, 512});
    std::vector<uint8_t> expected_bytes(quant::ggml_row_bytes(type, source.size()));
    quant::quantize_ggml(type, source, expected_bytes);
    CHECK(std::equal(tensor.bytes.begin(), tensor.bytes.end(), expected_bytes.begin(), expected_bytes.end()));
    if (type == GgmlType::F32) CHECK(file.to_fp32(tensor) == source);
  }
  CHECK(file.to_fp32(file.tensor("vector")) == std::vector<float>{1, 2, 3});
}

TEST_CASE("gguf writer: every metadata value of gguf-py's metadata.gguf copies through unchanged") {
  model::GgufFile source(test::source_dir() / "tests" / "data" / "gguf" / "metadata.gguf");
  model::GgufWriter writer;
  for (const auto& [key, value] : source.metadata())
    if (key != "general.alignment") writer.set(key, value);  // the writer keeps the default alignment
  const fs::path path = test::temp_dir("gguf-writer-copy") / "copy.gguf";
  writer.write(path);
  model::GgufFile copy(path);
  CHECK(copy.metadata().size() + 1 == source.metadata().size());
  for (const auto& entry : copy.metadata()) {  // no structured binding under CAPTURE (clang 14)
    const std::string& key = entry.first;
    CAPTURE(key);
    check_same_value(entry.second, *source.find(key));
  }
}

TEST_CASE("gguf writer: a failing tensor or a NaN leaves no file behind") {
  const fs::path directory = test::temp_dir("gguf-writer-fail");
  model::GgufWriter writer;
  writer.add_tensor("fine", GgmlType::F32, {2}, [] { return std::vector<float>{1, 2}; });
  writer.add_tensor("nan", GgmlType::F16, {2}, [] { return std::vector<float>{1, std::nanf("")}; });
  const std::string error = test::user_error_of([&] { writer.write(directory / "x.gguf"); });
  CHECK(error.find("nan") != std::string::npos);
  CHECK(error.find("NaN") != std::string::npos);
  CHECK(entries_in(directory) == 0);
}
}

TEST_SUITE("merge") {
TEST_CASE("gguf export: an f32 file of examples/base reads back as its tensors, config and tokenizer") {
  const fs::path out = test::temp_dir("gguf-export") / "base.f32.gguf";
  const merge::GgufExportSummary summary = export_base(out, merge::GgufOutType::f32);
  CHECK(summary.types == std::map<std::string, int64_t>{{"F32", summary.tensors}});

  const model::ModelConfig hf = model::load_model_config(base_model());
  const model::ModelConfig gguf = model::load_model_config(out);
  test::check_gguf_config_fields(gguf, hf);
  CHECK(gguf.bos_token_id == hf.bos_token_id);
  CHECK(gguf.eos_token_ids == hf.eos_token_ids);
  CHECK(gguf.pad_token_id == hf.pad_token_id);

  // Every tensor, Q/K rows permuted on the way out and un-permuted by the reader: bit-equal.
  model::SafetensorsFolder folder(base_model());
  model::GgufTensorSource source(out, gguf);
  for (const std::string& name : folder.names()) {
    CAPTURE(name);
    CHECK(source.read(name) == model::to_fp32(folder.tensor(name)));
  }
  // The stored q rows are llama.cpp's order.
  model::GgufFile file(out);
  const auto q = model::to_fp32(folder.tensor("model.layers.1.self_attn.q_proj.weight"));
  CHECK(file.to_fp32(file.tensor("blk.1.attn_q.weight")) ==
        llama_cpp_rows(q, static_cast<uint64_t>(hf.q_size()), static_cast<uint64_t>(hf.num_attention_heads)));
  CHECK(file.get_string("tokenizer.ggml.pre") == "gpt-2");

  const text::Tokenizer from_json = model::load_model_tokenizer(base_model());
  const text::Tokenizer from_gguf = model::load_model_tokenizer(out);
  for (const char* text : {"In the beginning God created the heaven and the earth.", "  spaces\tand 123 numbers!",
                           "<|end_of_text|> and ünïcödé"})
    CHECK(from_gguf.encode(text, true) == from_json.encode(text, true));

  const std::string modelfile = read_text_file(summary.modelfile);
  CHECK(summary.modelfile == out.parent_path() / "base.f32.Modelfile");
  CHECK(modelfile.find("FROM ./base.f32.gguf\n") != std::string::npos);
  CHECK(modelfile.find("TEMPLATE \"{{ .Prompt }}\"\n") != std::string::npos);
  CHECK(modelfile.find("PARAMETER stop \"<|end_of_text|>\"\n") != std::string::npos);
}

TEST_CASE("gguf export: q4_k_m takes llama-quantize's type mix; quantized files read back near the source") {
  // use_more_bits over 32 layers: 0-3, 28-31 and every third between (6, 9, ... 27)
  std::vector<int64_t> more;
  for (int64_t layer = 0; layer < 32; layer++)
    if (merge::gguf_tensor_type(merge::GgufOutType::q4_k_m, "blk." + std::to_string(layer) + ".attn_v.weight",
                                {1024, 4096}, layer, 32, false) == GgmlType::Q6_K)
      more.push_back(layer);
  CHECK(more == std::vector<int64_t>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31});
  CHECK(merge::gguf_tensor_type(merge::GgufOutType::q4_k_m, "blk.5.attn_q.weight", {4096, 4096}, 5, 32, false) ==
        GgmlType::Q4_K);
  CHECK(merge::gguf_tensor_type(merge::GgufOutType::q4_k_m, "output.weight", {32000, 4096}, -1, 32, false) ==
        GgmlType::Q6_K);
  CHECK(merge::gguf_tensor_type(merge::GgufOutType::q4_k_m, "token_embd.weight", {32000, 4096}, -1, 32, false) ==
        GgmlType::Q4_K);
  CHECK(merge::gguf_tensor_type(merge::GgufOutType::q4_0, "token_embd.weight", {32000, 4096}, -1, 32, true) ==
        GgmlType::Q6_K);
  CHECK(merge::gguf_tensor_type(merge::GgufOutType::q8_0, "blk.0.attn_norm.weight", {4096}, 0, 32, false) ==
        GgmlType::F32);

  const fs::path out = test::temp_dir("gguf-export-q4km") / "base.q4_k_m.gguf";
  export_base(out, merge::GgufOutType::q4_k_m);
  model::GgufFile file(out);
  // examples/base: 4 layers (more bits in 2 and 3), tied embeddings, ffn_down rows of 704 (no whole
  // 256-blocks: Q4_K falls back to Q5_0, Q6_K to Q8_0).
  CHECK(file.tensor("token_embd.weight").type == GgmlType::Q6_K);
  CHECK(file.find_tensor("output.weight") == nullptr);
  CHECK(file.tensor("blk.0.attn_v.weight").type == GgmlType::Q4_K);
  CHECK(file.tensor("blk.2.attn_v.weight").type == GgmlType::Q6_K);
  CHECK(file.tensor("blk.0.ffn_down.weight").type == GgmlType::Q5_0);
  CHECK(file.tensor("blk.3.ffn_down.weight").type == GgmlType::Q8_0);
  CHECK(file.tensor("blk.0.attn_norm.weight").type == GgmlType::F32);
  CHECK(file.get_uint("general.file_type") == 15);
  model::SafetensorsFolder folder(base_model());
  model::GgufTensorSource source(out, model::load_model_config(out));
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.3.mlp.down_proj.weight"}) {
    CAPTURE(name);
    const std::vector<float> original = model::to_fp32(folder.tensor(name)), read = source.read(name);
    double error = 0, scale = 0;
    for (size_t i = 0; i < read.size(); i++) {
      error = std::max(error, std::fabs(double(read[i]) - original[i]));
      scale = std::max(scale, std::fabs(double(original[i])));
    }
    CHECK(error < 0.1 * scale);  // 4-5 bit steps of the row's range, and in the right rows
  }
}

TEST_CASE("gguf export: an adapter merged into a GGUF file equals the HF export with it") {
  const fs::path adapter =
      test::random_adapter(base_model(), "gguf-merge", 4, 8.0f, false,
                           {spec::Module::q_proj, spec::Module::k_proj, spec::Module::down_proj}, 3);
  const fs::path directory = test::temp_dir("gguf-export-merged");
  merge::ExportOptions hf;
  hf.model = base_model();
  hf.adapter = adapter;
  hf.output = directory / "hf";
  hf.dtype = kernels::DType::f32;
  hf.show_progress = false;
  merge::export_merged(test::context(), hf);
  const fs::path merged_gguf = directory / "merged.gguf";
  CHECK(export_base(merged_gguf, merge::GgufOutType::f32, adapter).adapted == 12);
  model::SafetensorsFolder merged(directory / "hf");
  model::GgufTensorSource source(merged_gguf, model::load_model_config(merged_gguf));
  for (const std::string& name : merged.names()) {
    CAPTURE(name);
    CHECK(source.read(name) == model::to_fp32(merged.tensor(name)));
  }
}

TEST_CASE("gguf export: a GGUF base re-exports to the same tensors and tokenizer, also requantized") {
  const fs::path directory = test::temp_dir("gguf-reexport");
  export_base(directory / "first.gguf", merge::GgufOutType::f32);
  merge::GgufExportOptions options;
  options.model = directory / "first.gguf";
  options.output = directory / "second.gguf";
  options.outtype = merge::GgufOutType::f32;
  options.show_progress = false;
  merge::export_gguf_model(nullptr, options);
  model::GgufFile first(directory / "first.gguf"), second(options.output);
  REQUIRE(first.tensors().size() == second.tensors().size());
  for (const model::GgufTensor& tensor : first.tensors()) {
    CAPTURE(tensor.name);
    const model::GgufTensor& again = second.tensor(tensor.name);
    CHECK(again.ne == tensor.ne);
    CHECK(std::equal(tensor.bytes.begin(), tensor.bytes.end(), again.bytes.begin(), again.bytes.end()));
  }
  for (const auto& [key, value] : first.metadata())
    if (key.rfind("tokenizer.", 0) == 0) CHECK(second.contains(key));
  CHECK(second.get_string_array("tokenizer.ggml.merges") == first.get_string_array("tokenizer.ggml.merges"));
  // f32 GGUF -> q8_0 GGUF: the bytes the quantizer makes of the HF weights, Q/K rows in llama.cpp's order.
  options.output = directory / "third.q8_0.gguf";
  options.outtype = merge::GgufOutType::q8_0;
  merge::export_gguf_model(nullptr, options);
  export_base(directory / "direct.q8_0.gguf", merge::GgufOutType::q8_0);
  model::GgufFile third(options.output), direct(directory / "direct.q8_0.gguf");
  for (const model::GgufTensor& tensor : direct.tensors()) {
    CAPTURE(tensor.name);
    const model::GgufTensor& again = third.tensor(tensor.name);
    CHECK(std::equal(tensor.bytes.begin(), tensor.bytes.end(), again.bytes.begin(), again.bytes.end()));
  }
}

TEST_CASE("gguf export: as llama.cpp's convert_hf_to_gguf.py writes them (its goldens in tests/data/gguf)") {
  // qwen2: the whole model against qwen2.f32.gguf (tensors, metadata) and tokenizer_qwen2.gguf (tokenizer).
  const fs::path qwen2 = family_with_tokenizer(
      "qwen2", "", "<|endoftext|>",
      "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
  merge::GgufExportOptions options;
  options.model = qwen2;
  options.output = qwen2 / "qwen2.f32.gguf";
  options.outtype = merge::GgufOutType::f32;
  options.show_progress = false;
  merge::export_gguf_model(nullptr, options);
  model::GgufFile ours(options.output);
  const std::string modelfile = read_text_file(qwen2 / "qwen2.f32.Modelfile");  // ChatML: Ollama's Go template
  CHECK(modelfile.find("TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>{{ .Role }}\n") != std::string::npos);
  CHECK(modelfile.find("PARAMETER stop \"<|im_end|>\"\n") != std::string::npos);
  CHECK(modelfile.find("PARAMETER stop \"<|endoftext|>\"\n") != std::string::npos);
  const fs::path goldens = test::source_dir() / "tests/data/gguf";
  model::GgufFile converter(goldens / "qwen2.f32.gguf");
  REQUIRE(ours.tensors().size() == converter.tensors().size());
  for (const model::GgufTensor& tensor : converter.tensors()) {
    CAPTURE(tensor.name);
    const model::GgufTensor& mine = ours.tensor(tensor.name);
    CHECK(mine.type == tensor.type);
    CHECK(mine.ne == tensor.ne);
    CHECK(std::equal(tensor.bytes.begin(), tensor.bytes.end(), mine.bytes.begin(), mine.bytes.end()));
  }
  for (const auto& entry : converter.metadata()) {
    const std::string& key = entry.first;
    const model::GgufValue& value = entry.second;
    if (key == "general.name" || key == "general.size_label" || key == "tokenizer.ggml.model") continue;
    CAPTURE(key);
    REQUIRE(ours.contains(key));
    check_same_value(*ours.find(key), value);
  }
  // The tokenizer keys (llama3 through set_gguf_tokenizer alone: its llama3 rope is not exported yet).
  const fs::path llama3 = family_with_tokenizer("llama3", "<|begin_of_text|>", "<|end_of_text|>", "");
  model::GgufWriter llama3_tokenizer;
  model::set_gguf_tokenizer(llama3_tokenizer, llama3, model::load_model_config(llama3));
  const fs::path llama3_file = llama3 / "tokenizer.gguf";
  llama3_tokenizer.write(llama3_file);
  for (const auto& pair : {std::pair{"qwen2", options.output}, std::pair{"llama3", llama3_file}}) {
    const std::string family = pair.first;
    model::GgufFile mine(pair.second), theirs(goldens / ("tokenizer_" + family + ".gguf"));
    for (const auto& entry : theirs.metadata()) {
      const std::string& key = entry.first;
      const model::GgufValue& value = entry.second;
      if (key.rfind("tokenizer.", 0) != 0) continue;
      CAPTURE(family);
      CAPTURE(key);
      REQUIRE(mine.contains(key));
      check_same_value(*mine.find(key), value);
    }
  }
}

TEST_CASE("gguf-lora: llama.cpp's names and shapes, alpha with rsLoRA folded in, lora_b rows permuted for q/k") {
  const std::vector<spec::Module> targets = {spec::Module::q_proj, spec::Module::k_proj, spec::Module::v_proj};
  for (bool rslora : {false, true}) {
    CAPTURE(rslora);
    const fs::path adapter = test::random_adapter(base_model(), rslora ? "gguf-lora-rs" : "gguf-lora", 4,
                                                  rslora ? 2.0f : 8.0f, rslora, targets, 9);
    merge::GgufLoraExportOptions options;
    options.adapter = adapter;
    options.model = base_model();
    options.output = test::temp_dir("gguf-lora-out") / "new folder" / "adapter.gguf";  // created
    options.outtype = merge::GgufOutType::f32;
    const merge::GgufExportSummary summary = merge::export_gguf_lora(options);
    CHECK(summary.tensors == 4 * 3 * 2);
    model::GgufFile file(options.output);
    CHECK(file.get_string("general.type") == "adapter");
    CHECK(file.get_string("adapter.type") == "lora");
    CHECK(file.get_string("general.architecture") == "llama");
    // llama.cpp scales by alpha / r: 8/4 = 2 plainly; rsLoRA's 2/sqrt(4) = 1 needs alpha 4.
    CHECK(file.get_float("adapter.lora.alpha") == (rslora ? 4.0 : 8.0));
    const model::ModelConfig config = model::load_model_config(base_model());
    model::SafetensorsFile weights(adapter / "adapter_model.safetensors");
    const std::string prefix = "base_model.model.model.layers.2.self_attn.";
    for (const auto& row :
         {std::tuple{"q_proj", "attn_q", config.num_attention_heads},
          std::tuple{"k_proj", "attn_k", config.num_key_value_heads}, std::tuple{"v_proj", "attn_v", int64_t{0}}}) {
      const std::string module = std::get<0>(row), gguf = std::get<1>(row);
      const int64_t heads = std::get<2>(row);
      CAPTURE(module);
      const model::GgufTensor& a = file.tensor(std::string("blk.2.") + gguf + ".weight.lora_a");
      const model::GgufTensor& b = file.tensor(std::string("blk.2.") + gguf + ".weight.lora_b");
      const auto peft_a = model::to_fp32(weights.tensor(prefix + module + ".lora_A.weight"));
      const auto peft_b = model::to_fp32(weights.tensor(prefix + module + ".lora_B.weight"));
      CHECK(a.ne == std::vector<uint64_t>{256, 4});  // llama.cpp: a->ne[0] = in, a->ne[1] = b->ne[0] = r
      CHECK(file.to_fp32(a) == peft_a);
      const uint64_t out = peft_b.size() / 4;
      CHECK(b.ne == std::vector<uint64_t>{4, out});
      CHECK(file.to_fp32(b) == (heads ? llama_cpp_rows(peft_b, out, static_cast<uint64_t>(heads)) : peft_b));
    }
    const std::string modelfile = read_text_file(summary.modelfile);
    CHECK(modelfile.find("ADAPTER ./adapter.gguf\n") != std::string::npos);
  }
  // q8_0: lora_a rows of 256 are Q8_0 blocks; lora_b rows of r = 4 are not, so F16 as the converter falls back.
  const fs::path adapter = test::random_adapter(base_model(), "gguf-lora-q8", 4, 8.0f, false, targets, 9);
  merge::GgufLoraExportOptions options;
  options.adapter = adapter;
  options.model = base_model();
  options.output = test::temp_dir("gguf-lora-q8") / "adapter.q8_0.gguf";
  options.outtype = merge::GgufOutType::q8_0;
  CHECK(merge::export_gguf_lora(options).types == std::map<std::string, int64_t>{{"F16", 12}, {"Q8_0", 12}});
  options.outtype = merge::GgufOutType::q4_k_m;
  CHECK(test::user_error_of([&] { merge::export_gguf_lora(options); }).find("not written as q4_k_m") !=
        std::string::npos);
}
}
