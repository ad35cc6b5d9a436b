#include "engine/merge/gguf_export.hpp"

#include <chrono>
#include <tuple>

#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/progress.hpp"
#include "engine/merge/modelfile.hpp"
#include "engine/merge/source.hpp"
#include "engine/model/adapter.hpp"
#include "engine/model/gguf_metadata_out.hpp"
#include "engine/model/gguf_model.hpp"
#include "engine/model/session.hpp"

namespace vkt::merge {

namespace fs = std::filesystem;
using quant::GgmlType;

namespace {

// Per GgufOutType (in enum order): its flag name, llama_ftype, and whether a LoRA adapter may be
// written in it (llama.cpp's converter writes adapters in f32/f16/bf16/q8_0).
constexpr std::tuple<GgufOutType, const char*, uint32_t, bool> kOutTypes[] = {
    {GgufOutType::f32, "f32", 0, true},    {GgufOutType::f16, "f16", 1, true},
    {GgufOutType::bf16, "bf16", 32, true}, {GgufOutType::q8_0, "q8_0", 7, true},
    {GgufOutType::q4_0, "q4_0", 2, false}, {GgufOutType::q4_k_m, "q4_k_m", 15, false},
};
uint32_t file_type_of(GgufOutType type) { return std::get<2>(kOutTypes[static_cast<size_t>(type)]); }
bool adapter_type(GgufOutType type) { return std::get<3>(kOutTypes[static_cast<size_t>(type)]); }

// llama-quant.cpp's tensor_type_fallback: a type whose blocks do not divide the rows.
GgmlType fitting(GgmlType type, uint64_t cols) {
  auto fits = [&](GgmlType t) { return cols % quant::ggml_type_info(t).block_elems == 0; };
  if (fits(type)) return type;
  const GgmlType fallback = type == GgmlType::Q4_K ? GgmlType::Q5_0 : type == GgmlType::Q6_K ? GgmlType::Q8_0 : type;
  return fits(fallback) ? fallback : GgmlType::F16;
}

bool has_part(const std::string& name, const char* part) { return name.find(part) != std::string::npos; }

// llama-quant.cpp's use_more_bits: the layers whose attn_v / ffn_down get more bits in *_K_M.
bool use_more_bits(int64_t layer, int64_t layers) {
  return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}

int64_t layer_of(const std::string& gguf_name) {
  if (gguf_name.rfind("blk.", 0) != 0) return -1;
  return std::stoll(gguf_name.substr(4, gguf_name.find('.', 4) - 4));
}

std::string model_name(const fs::path& model) {
  const fs::path path = model.has_filename() ? model : model.parent_path();
  return is_directory(path) ? path.filename().string() : path.stem().string();
}

uint64_t file_size_of(const fs::path& path) {
  std::error_code error;
  const uint64_t size = fs::file_size(path, error);
  return error ? 0 : size;
}

// A .gguf path whose folder exists afterwards.
void prepare_gguf_output(const fs::path& output) {
  if (output.extension() != ".gguf")
    throw UserError("--output " + output.string() + " does not end in .gguf",
                    "name the file to write, e.g. --output model.q4_k_m.gguf");
  if (output.has_parent_path()) fs::create_directories(output.parent_path());
}

}  // namespace

GgufOutType gguf_outtype_from_flag(const std::string& value, const std::string& flag, bool adapter) {
  std::string names;
  for (const auto& [type, name, file_type, for_adapters] : kOutTypes) {
    if (adapter && !for_adapters) continue;
    if (value == name) return type;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  throw UserError(flag + " " + value + " is not a GGUF " + (adapter ? "adapter " : "") + "type",
                  "choose one of " + names);
}

const char* gguf_outtype_name(GgufOutType type) { return std::get<1>(kOutTypes[static_cast<size_t>(type)]); }

GgmlType gguf_tensor_type(GgufOutType outtype, const std::string& gguf_name, const std::vector<uint64_t>& shape,
                          int64_t layer, int64_t layers, bool tied) {
  if (shape.size() < 2) return GgmlType::F32;  // norms, biases: F32 in every llama.cpp file type
  const uint64_t cols = shape.back();
  const bool output = gguf_name == "output.weight" || (tied && gguf_name == "token_embd.weight");
  switch (outtype) {
    case GgufOutType::f32:
      return GgmlType::F32;
    case GgufOutType::f16:
      return GgmlType::F16;
    case GgufOutType::bf16:
      return GgmlType::BF16;
    case GgufOutType::q8_0:
      return fitting(GgmlType::Q8_0, cols);
    case GgufOutType::q4_0:
      // llama-quant: the output matrix takes Q6_K (Q8_0 when its rows are no whole super-blocks).
      if (output) return cols % 256 == 0 ? GgmlType::Q6_K : GgmlType::Q8_0;
      return fitting(GgmlType::Q4_0, cols);
    case GgufOutType::q4_k_m: {
      if (output) return cols % 256 == 0 ? GgmlType::Q6_K : GgmlType::Q8_0;
      const bool more_bits = (has_part(gguf_name, ".attn_v.") || has_part(gguf_name, ".ffn_down.")) && layer >= 0 &&
                             use_more_bits(layer, layers);
      return fitting(more_bits ? GgmlType::Q6_K : GgmlType::Q4_K, cols);
    }
  }
  VKT_ASSERT(false, "unknown GGUF outtype");
  return GgmlType::F32;
}

GgufExportSummary export_gguf_model(vk::Context* context, const GgufExportOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  prepare_gguf_output(options.output);
  ModelSource source(context, options.model, options.adapter);
  const model::ModelConfig& config = source.config();
  const std::string arch = model::gguf_architecture(config, options.model.string());
  model::GgufWriter writer;
  model::set_gguf_hyperparameters(writer, config, model_name(options.model), file_type_of(options.outtype));
  model::set_gguf_tokenizer(writer, options.model, config);

  GgufExportSummary summary;
  ProgressBar progress("export", static_cast<int64_t>(source.tensor_names().size()));
  int64_t done = 0;
  for (const std::string& name : source.tensor_names()) {
    if (config.tie_word_embeddings && name == "lm_head.weight") continue;  // llama.cpp reuses token_embd
    const std::string gguf_name = model::gguf_tensor_name(name);
    if (gguf_name.empty())
      throw UserError(options.model.string() + ": tensor " + name + " has no GGUF counterpart",
                      "GGUF export writes the tensors of Llama, Mistral, Qwen2 and Qwen3 models");
    const std::vector<uint64_t> shape = source.info(name).shape;
    const GgmlType type = gguf_tensor_type(options.outtype, gguf_name, shape, layer_of(gguf_name),
                                           config.num_hidden_layers, config.tie_word_embeddings);
    summary.types[quant::ggml_type_name(type)]++;
    int64_t heads = 0;  // llama's q/k rows are stored permuted
    if (model::gguf_permutes_qk(arch) && has_part(gguf_name, ".attn_q.")) heads = config.num_attention_heads;
    if (model::gguf_permutes_qk(arch) && has_part(gguf_name, ".attn_k.")) heads = config.num_key_value_heads;
    writer.add_tensor(gguf_name, type, shape, [&, name, heads, rows = shape[0]] {
      std::vector<float> values = source.read(name);
      source.release(name);
      if (options.show_progress) progress.update(++done, name);
      return heads ? model::permute_qk_rows(values, rows, heads, true) : values;
    });
  }
  summary.tensors = static_cast<int64_t>(writer.tensor_count());
  writer.write(options.output);
  if (options.show_progress) progress.finish();
  summary.adapted = source.adapted_tensors();
  summary.bytes = file_size_of(options.output);
  summary.modelfile = modelfile_path(options.output);
  write_file_atomically(summary.modelfile, ollama_modelfile(writer, "./" + options.output.filename().string(), ""));
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

GgufExportSummary export_gguf_lora(const GgufLoraExportOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  prepare_gguf_output(options.output);
  if (!adapter_type(options.outtype))
    throw UserError(std::string("a GGUF LoRA adapter is not written as ") + gguf_outtype_name(options.outtype),
                    "use --outtype f32, f16, bf16 or q8_0 for adapters");
  const model::AdapterFile adapter = model::load_adapter_config(options.adapter);
  const model::LoraSettings& lora = adapter.settings;
  if (lora.peft_type != spec::PeftType::lora)
    throw UserError(options.adapter.string() + " is a --peft-type " + spec::peft_type_name(lora.peft_type) +
                        " adapter: llama.cpp's GGUF adapters hold LoRA factors only",
                    "export the merged model instead: vktune export --format gguf --model BASE --adapter " +
                        options.adapter.string());
  if (lora.save_embed_tokens || lora.save_lm_head || !lora.saved_norms.empty() || !lora.token_indices.empty())
    throw UserError(options.adapter.string() +
                        " trains modules_to_save or trainable tokens, which llama.cpp's "
                        "LoRA adapters cannot hold",
                    "export the merged model instead: vktune export --format gguf --model BASE --adapter " +
                        options.adapter.string());
  const model::ModelConfig config = model::load_model_config(options.model);
  const std::string arch = model::gguf_architecture(config, options.model.string());
  const spec::ModelShape shape = model::model_shape(config);
  const fs::path weights_path = options.adapter / "adapter_model.safetensors";
  if (!fs::exists(weights_path))
    throw UserError(options.adapter.string() + " has no adapter_model.safetensors", "is this a PEFT adapter folder?");
  model::SafetensorsFile weights(weights_path);

  model::GgufWriter writer;
  writer.set_string("general.architecture", arch);
  writer.set_string("general.type", "adapter");
  writer.set_string("general.name", model_name(options.adapter));
  writer.set_string("adapter.type", "lora");
  // llama.cpp scales by alpha / r (r = lora_b's inner size): alpha = scale · r gives our scale,
  // rsLoRA's alpha / sqrt(r) included.
  writer.set_float32("adapter.lora.alpha", double(lora.scale()) * lora.rank);

  GgufExportSummary summary;
  for (uint32_t layer = 0; layer < static_cast<uint32_t>(config.num_hidden_layers); layer++)
    for (spec::Module module : lora.targets) {
      if (spec::fused_owner(shape, module) != module)
        throw UserError(options.model.string() + ": fused projections are not written to GGUF yet", "");
      const std::string hf_name = "model.layers." + std::to_string(layer) + "." + spec::module_path(module) + ".weight";
      const std::string base = model::gguf_tensor_name(hf_name);
      for (bool a : {true, false}) {
        const model::TensorView* tensor = model::find_peft_tensor(weights, shape, layer, module, a);
        if (!tensor)
          throw UserError(weights_path.string() + ": no tensor " + model::peft_tensor_name(shape, layer, module, a),
                          "the adapter's target_modules or layer count do not match " + options.model.string());
        const std::vector<uint64_t> expected =
            a ? std::vector<uint64_t>{lora.rank, spec::module_in_features(shape, module)}
              : std::vector<uint64_t>{spec::fused_out_features(shape, module), lora.rank};
        if (tensor->shape != expected)
          throw UserError(weights_path.string() + ": tensor " + tensor->name + " has the wrong shape for r=" +
                              std::to_string(lora.rank) + " on " + options.model.string(),
                          "the adapter was trained for another base model");
        int64_t heads = 0;
        if (!a && model::gguf_permutes_qk(arch) && module == spec::Module::q_proj) heads = config.num_attention_heads;
        if (!a && model::gguf_permutes_qk(arch) && module == spec::Module::k_proj) heads = config.num_key_value_heads;
        // q8_0: a lora_b of a rank that is no multiple of 32 falls back to F16
        const GgmlType type = gguf_tensor_type(options.outtype, base, expected, -1, 0, false);
        summary.types[quant::ggml_type_name(type)]++;
        writer.add_tensor(base + (a ? ".lora_a" : ".lora_b"), type, expected, [tensor, heads, rows = expected[0]] {
          std::vector<float> values = model::to_fp32(*tensor);
          return heads ? model::permute_qk_rows(values, rows, heads, true) : values;
        });
      }
    }
  summary.tensors = static_cast<int64_t>(writer.tensor_count());
  writer.write(options.output);
  summary.bytes = file_size_of(options.output);
  // The Modelfile names the base as FROM: the .gguf itself when the base is one.
  model::GgufWriter base_metadata;
  model::set_gguf_tokenizer(base_metadata, options.model, config);
  const std::string from = model::is_gguf_file(options.model) ? fs::absolute(options.model).string() : "./base.gguf";
  summary.modelfile = modelfile_path(options.output);
  write_file_atomically(summary.modelfile,
                        ollama_modelfile(base_metadata, from, "./" + options.output.filename().string()));
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace vkt::merge
