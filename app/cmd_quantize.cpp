// `vktune quantize --model DIR --format nf4|int8|int4|int4-asym --output DIR`: post-training
// quantization of the linear weights (engine/merge/quantize_model.hpp), with per-tensor errors,
// sizes before/after and, with --eval-data, perplexity before and after (engine/train/evaluate.hpp).
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/quantize_model.hpp"
#include "engine/plan/report.hpp"
#include "engine/train/evaluate.hpp"

namespace vkt::app {

void add_quantize_command(CLI::App& app) {
  auto* command = app.add_subcommand("quantize",
                                     "Quantize a model's linear weights (NF4 in bitsandbytes' layout, "
                                     "or vktune's INT8/INT4/INT4-asym) and report the error");
  static std::string model, output, format, eval_data, max_shard_size = "5GB";
  static bool double_quant = false, all_tensors = false;
  static int64_t block_size = 64, device = -1, batch = 4, max_length = 1024;
  command->add_option("--model", model, "model folder (dense fp32/fp16/bf16)")->required();
  command->add_option("--format", format, "nf4 | int8 | int4 | int4-asym")->required();
  command->add_option("--output,-o", output, "output folder")->required();
  command->add_flag("--double-quant", double_quant,
                    "nf4: quantize the absmax values too (bitsandbytes' compress_statistics)");
  command->add_option("--block-size", block_size, "elements per quantization block (a power of two, default 64)");
  command->add_option("--eval-data", eval_data, "JSONL (trainer formats): report perplexity before and after");
  command->add_option("--eval-batch-size", batch, "sequences per evaluation batch (default 4)");
  command->add_option("--max-length", max_length, "truncate evaluation sequences to this many tokens (default 1024)");
  command->add_option("--max-shard-size", max_shard_size, "split model.safetensors above this size (default 5GB)");
  command->add_flag("--all-tensors", all_tensors, "print every tensor's error (default: the 12 worst and a summary)");
  command->add_option("--device", device, "Vulkan device index (vktune devices lists them)");
  command->footer(
      "Embeddings, lm_head, norms and biases are kept as they are. NF4 output loads in vktune\n"
      "(--method qlora) and in transformers with bitsandbytes; int formats load in vktune\n"
      "(inference and as a LoRA base).\n"
      "Example:\n  vktune quantize --model base --format nf4 --double-quant --output base-nf4 --eval-data eval.jsonl");
  command->callback([] {
    require_new_output_folder(model, output, "quantized");
    merge::QuantizeOptions options;
    options.model = model;
    options.output = output;
    options.format = merge::parse_quantize_format(format);
    options.block_size = static_cast<uint32_t>(block_size);
    options.double_quant = double_quant;
    if (double_quant && options.format != kernels::WeightFormat::nf4)
      throw UserError("--double-quant applies to nf4 only", "drop it, or use --format nf4");
    options.max_shard_bytes = parse_byte_size(max_shard_size);
    vk::ContextOptions context_options;
    context_options.device_index = static_cast<int>(device);
    vk::Context context(context_options);
    train::EvalOptions eval;
    eval.batch = static_cast<uint32_t>(batch);
    eval.max_length = static_cast<uint32_t>(max_length);
    std::optional<train::EvalResult> before;
    if (!eval_data.empty()) before = train::evaluate_model(context, model, eval_data, eval);

    merge::QuantizeSummary summary = merge::quantize_model(context, options);
    std::vector<const merge::QuantizedTensorReport*> order;
    double worst_relative = 0, rmse_sum = 0;
    for (const auto& t : summary.tensors) {
      order.push_back(&t);
      worst_relative = std::max(worst_relative, t.max_abs_weight > 0 ? t.max_error / t.max_abs_weight : 0.0);
      rmse_sum += t.rmse;
    }
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->rmse > b->rmse; });
    size_t shown = all_tensors ? order.size() : std::min<size_t>(order.size(), 12);
    std::printf("%-48s %12s %12s %12s %10s\n", "tensor (by RMSE, worst first)", "RMSE", "max error", "bound",
                "max |w|");
    for (size_t i = 0; i < shown; i++) {
      const auto& t = *order[i];
      std::printf("%-48s %12.4e %12.4e %12.4e %10.4f\n", t.name.c_str(), t.rmse, t.max_error, t.bound,
                  t.max_abs_weight);
    }
    if (shown < order.size()) std::printf("... %zu more (--all-tensors lists them)\n", order.size() - shown);
    std::printf(
        "%zu weights quantized to %s (block %lld%s): mean RMSE %.4e, worst max error %.3g of the weight's max |w|\n",
        summary.tensors.size(), format.c_str(), static_cast<long long>(block_size),
        double_quant ? ", double quant" : "", summary.tensors.empty() ? 0.0 : rmse_sum / double(summary.tensors.size()),
        worst_relative);
    std::printf("size: %s -> %s (%.2fx smaller) in %s -> %s\n", format_bytes(double(summary.bytes_before)).c_str(),
                format_bytes(double(summary.bytes_after)).c_str(),
                summary.bytes_after ? double(summary.bytes_before) / double(summary.bytes_after) : 0.0,
                format_duration(summary.seconds).c_str(), output.c_str());
    if (before) {
      train::EvalResult after = train::evaluate_model(context, output, eval_data, eval);
      std::printf(
          "eval %s (%lld examples, %.0f weighted tokens): loss %.4f -> %.4f, perplexity %.3f -> %.3f (%+.2f%%)\n",
          eval_data.c_str(), static_cast<long long>(after.examples), after.weight_sum, before->loss, after.loss,
          before->perplexity, after.perplexity, 100.0 * (after.perplexity / before->perplexity - 1.0));
    }
  });
}

}  // namespace vkt::app
