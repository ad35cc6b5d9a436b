// `vktune export --model DIR --adapter DIR --output DIR [--dtype fp32|fp16|bf16]`: PEFT's
// merge_and_unload into a plain HF folder (engine/merge/export.hpp); with --format gguf a GGUF
// model file, with --format gguf-lora a GGUF LoRA adapter (engine/merge/gguf_export.hpp).
#include <cstdio>
#include <filesystem>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/export.hpp"
#include "engine/merge/gguf_export.hpp"
#include "engine/model/adapter.hpp"
#include "engine/plan/report.hpp"

namespace vkt::app {

namespace {

void print_gguf_summary(const merge::GgufExportSummary& summary, const std::string& output) {
  std::string types;
  for (const auto& [type, count] : summary.types)
    types += (types.empty() ? "" : ", ") + std::to_string(count) + " " + type;
  std::printf("wrote %s: %lld tensors (%s)%s, %s in %s; Ollama: %s\n", output.c_str(),
              static_cast<long long>(summary.tensors), types.c_str(),
              summary.adapted ? (", " + std::to_string(summary.adapted) + " with the adapter merged in").c_str() : "",
              format_bytes(double(summary.bytes)).c_str(), format_duration(summary.seconds).c_str(),
              summary.modelfile.string().c_str());
}

// The base of a gguf-lora export: --model, else the adapter's base_model_name_or_path when it is a
// local folder or file.
std::string lora_base(const std::string& model, const std::string& adapter) {
  if (!model.empty()) return model;
  const std::string base = model::load_adapter_config(adapter).base_model;
  if (!base.empty() && std::filesystem::exists(base)) return base;
  throw UserError("--format gguf-lora needs the base model (its architecture and head counts); " + adapter +
                      "/adapter_config.json names \"" + base + "\", which is not here",
                  "pass --model BASE (an HF folder or a .gguf file)");
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto* command = app.add_subcommand("export",
                                     "Merge a LoRA adapter into its base model (PEFT merge_and_unload) "
                                     "and write a plain HF folder, or write GGUF for llama.cpp / Ollama");
  static std::string model, adapter, output, dtype, max_shard_size = "5GB", format = "hf", outtype = "f16";
  static int64_t device = -1;
  command->add_option("--model", model,
                      "base model folder (dense, or a bitsandbytes NF4 / vktune-quantized one) or .gguf file "
                      "(required except for gguf-lora, which can take the adapter's base_model_name_or_path)");
  command->add_option(
      "--adapter", adapter,
      "PEFT adapter folder (LoRA, DoRA, IA3; or vktune BitFit) (without it, only dequantize / convert the dtype)");
  command->add_option("--output,-o", output, "output folder (hf) or FILE.gguf (gguf, gguf-lora)")->required();
  command->add_option("--format", format,
                      "hf: an HF folder (default); gguf: a GGUF model file with the adapter merged in; "
                      "gguf-lora: the adapter as a GGUF LoRA (llama-cli --lora, Ollama ADAPTER)");
  command->add_option(
      "--outtype", outtype,
      "gguf: f32 | f16 | bf16 | q8_0 | q4_0 | q4_k_m; gguf-lora: f32 | f16 | bf16 | q8_0 (default f16)");
  command->add_option("--dtype", dtype,
                      enum_name_list(kernels::dtype_names(), " | ") + " (default: the base's torch_dtype)");
  command->add_option("--max-shard-size", max_shard_size, "split model.safetensors above this size (default 5GB)");
  command->add_option("--device", device, "Vulkan device index (vktune devices lists them)");
  command->footer(
      "W' = W + (lora_alpha/r)·B·A for every adapted module (alpha/sqrt(r) with use_rslora).\n"
      "GGUF files get an Ollama FILE.Modelfile beside them (ollama create NAME -f FILE.Modelfile).\n"
      "Examples:\n  vktune export --model base --adapter out/adapter --output merged --dtype bf16\n"
      "  vktune export --model base.gguf --adapter out --format gguf --outtype q4_k_m --output merged.gguf\n"
      "  vktune export --model base.gguf --adapter out --format gguf-lora --output out/adapter.gguf");
  command->callback([] {
    if (format == "gguf-lora") {
      if (adapter.empty()) throw UserError("--format gguf-lora needs --adapter", "give the PEFT adapter folder");
      merge::GgufLoraExportOptions options;
      options.adapter = adapter;
      options.model = lora_base(model, adapter);
      options.output = output;
      options.outtype = merge::gguf_outtype_from_flag(outtype, "--outtype", true);
      print_gguf_summary(merge::export_gguf_lora(options), output);
      return;
    }
    if (model.empty()) throw UserError("--model is required", "give the base model folder or .gguf file");
    if (format == "gguf") {
      merge::GgufExportOptions options;
      options.model = model;
      if (!adapter.empty()) options.adapter = adapter;
      options.output = output;
      options.outtype = merge::gguf_outtype_from_flag(outtype, "--outtype");
      std::unique_ptr<vk::Context> context;
      if (options.adapter) {
        vk::ContextOptions context_options;
        context_options.device_index = static_cast<int>(device);
        context = std::make_unique<vk::Context>(context_options);
      }
      print_gguf_summary(merge::export_gguf_model(context.get(), options), output);
      return;
    }
    if (format != "hf")
      throw UserError("--format " + format + " is not an export format", "choose hf, gguf or gguf-lora");
    require_new_output_folder(model, output, "merged");
    merge::ExportOptions options;
    options.model = model;
    if (!adapter.empty()) options.adapter = adapter;
    options.output = output;
    if (!dtype.empty()) options.dtype = merge::dtype_from_flag(dtype, "--dtype");  // before opening a device
    options.max_shard_bytes = parse_byte_size(max_shard_size);
    vk::ContextOptions context_options;
    context_options.device_index = static_cast<int>(device);
    vk::Context context(context_options);
    merge::ExportSummary summary = merge::export_merged(context, options);
    std::printf(
        "exported %lld tensors (%llu with the adapter merged in%s) as %s: %s in %s -> %s\n",
        static_cast<long long>(summary.tensors), static_cast<unsigned long long>(summary.adapted),
        summary.base_quantization.empty() ? "" : (", base " + summary.base_quantization + " dequantized").c_str(),
        summary.out_dtype.c_str(), format_bytes(double(summary.bytes_written)).c_str(),
        format_duration(summary.seconds).c_str(), output.c_str());
  });
}

}  // namespace vkt::app
