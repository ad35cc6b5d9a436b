// `vktune prune --model DIR --sparsity 0.5 --method magnitude|wanda|2:4 [--calibration-data F]
// --output DIR`: zeroes the least important linear weights (engine/merge/prune.hpp; Wanda's
// calibration norms from engine/train/calibration.hpp), reports each tensor's sparsity and, with
// --eval-data, perplexity before and after.
#include <cstdio>
#include <filesystem>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/merge/prune.hpp"
#include "engine/train/calibration.hpp"
#include "engine/train/evaluate.hpp"

namespace vkt::app {

void add_prune_command(CLI::App& app) {
  auto* command = app.add_subcommand("prune", "Prune a model's linear weights (magnitude, Wanda, 2:4) to a sparsity");
  static std::string model, output, method = "magnitude", calibration, eval_data;
  static double sparsity = 0.5;
  static int64_t device = -1, batch = 4, max_length = 1024;
  command->add_option("--model", model, "model folder (dense fp32/fp16/bf16)")->required();
  command->add_option("--output,-o", output, "output folder")->required();
  command->add_option("--method", method,
                      "magnitude (|W| per tensor) | wanda (|W|·‖X‖ per output row) | 2:4 (2 of every 4 inputs)");
  command->add_option("--sparsity", sparsity, "fraction of each linear weight set to zero (default 0.5)");
  command->add_option("--calibration-data", calibration,
                      "JSONL (trainer formats): activations for wanda (required) and a wanda-scored 2:4");
  command->add_option("--eval-data", eval_data, "JSONL: report perplexity before and after");
  command->add_option("--eval-batch-size", batch, "sequences per batch, calibration and evaluation (default 4)");
  command->add_option("--max-length", max_length, "truncate sequences to this many tokens (default 1024)");
  command->add_option("--device", device, "Vulkan device index (vktune devices lists them)");
  command->footer(
      "Embeddings, norms and lm_head stay dense. pruning.json records the method and every tensor's zeros;\n"
      "the mask is W == 0: a later --method full run keeps those weights at zero, a LoRA adapter is dense\n"
      "(as PEFT's) and `vktune export` re-applies the base's zeros to the merged weights.\n"
      "Example:\n  vktune prune --model base --method wanda --sparsity 0.5 --calibration-data train.jsonl "
      "--output base-wanda50");
  command->callback([] {
    require_new_output_folder(model, output, "pruned");
    merge::PruneOptions options;
    options.model = model;
    options.output = output;
    options.method = merge::prune_method_from_flag(method);
    options.sparsity = sparsity;
    vk::ContextOptions context_options;
    context_options.device_index = static_cast<int>(device);
    vk::Context context(context_options);
    train::EvalOptions eval;
    eval.batch = static_cast<uint32_t>(batch);
    eval.max_length = static_cast<uint32_t>(max_length);
    std::optional<train::EvalResult> before;
    if (!eval_data.empty()) before = train::evaluate_model(context, model, eval_data, eval);
    merge::ColumnNorms norms;
    if (options.method == merge::PruneMethod::wanda && calibration.empty())
      throw UserError("--method wanda needs --calibration-data", "give a JSONL file of typical text");
    if (!calibration.empty() && options.method != merge::PruneMethod::magnitude)
      norms = train::calibration_column_norms(context, model, calibration, static_cast<uint32_t>(max_length),
                                              static_cast<uint32_t>(batch));
    merge::PruneSummary summary = merge::prune_model(options, norms);
    std::printf("%-48s %10s %10s\n", "tensor", "zeros", "sparsity");
    for (const auto& t : summary.tensors)
      std::printf("%-48s %10llu %9.2f%%\n", t.name.c_str(), static_cast<unsigned long long>(t.zeros),
                  100.0 * double(t.zeros) / double(t.elements));
    std::printf("%zu weights pruned (%s%s): %.2f%% of their %llu values are zero -> %s\n", summary.tensors.size(),
                merge::prune_method_name(options.method), norms.empty() ? ", |W| scores" : ", calibrated",
                summary.elements ? 100.0 * double(summary.zeros) / double(summary.elements) : 0.0,
                static_cast<unsigned long long>(summary.elements), output.c_str());
    if (before) {
      train::EvalResult after = train::evaluate_model(context, output, eval_data, eval);
      std::printf("eval %s (%lld examples): loss %.4f -> %.4f, perplexity %.3f -> %.3f (%+.2f%%)\n", eval_data.c_str(),
                  static_cast<long long>(after.examples), before->loss, after.loss, before->perplexity,
                  after.perplexity, 100.0 * (after.perplexity / before->perplexity - 1.0));
    }
  });
}

}  // namespace vkt::app
