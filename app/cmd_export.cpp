// `vktune export --model DIR --adapter DIR --output DIR [--dtype fp32|fp16|bf16]`: PEFT's
// merge_and_unload into a plain HF folder (engine/merge/export.hpp).
#include <cstdio>
#include <filesystem>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/export.hpp"
#include "engine/plan/report.hpp"

namespace vkt::app {

void add_export_command(CLI::App& app) {
  auto* command = app.add_subcommand("export",
                                     "Merge a LoRA adapter into its base model (PEFT merge_and_unload) "
                                     "and write a plain HF folder");
  static std::string model, adapter, output, dtype, max_shard_size = "5GB";
  static int64_t device = -1;
  command->add_option("--model", model, "base model folder (dense, or a bitsandbytes NF4 / vktune-quantized one)")
      ->required();
  command->add_option("--adapter", adapter,
                      "PEFT LoRA adapter folder (without it, only dequantize / convert the dtype)");
  command->add_option("--output,-o", output, "output folder")->required();
  command->add_option("--dtype", dtype,
                      enum_name_list(kernels::dtype_names(), " | ") + " (default: the base's torch_dtype)");
  command->add_option("--max-shard-size", max_shard_size, "split model.safetensors above this size (default 5GB)");
  command->add_option("--device", device, "Vulkan device index (vktune devices lists them)");
  command->footer(
      "W' = W + (lora_alpha/r)·B·A for every adapted module (alpha/sqrt(r) with use_rslora).\n"
      "Example:\n  vktune export --model base --adapter out/adapter --output merged --dtype bf16");
  command->callback([] {
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
