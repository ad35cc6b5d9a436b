// `vktune evaluate`: greedy generation on held-out prompt/completion pairs, scored for form (JSON
// with the required keys) and content (fields equal to the reference); with --compare-base the
// base model alone is scored too and a few answers are shown side by side. With --loss: the mean
// weighted loss and perplexity on a JSONL file in the trainer's formats and loss weights
// (engine/train/evaluate.hpp), as llama.cpp's perplexity tool.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/base/progress.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/train/generation_eval.hpp"

namespace vkt::app {

namespace {
std::string one_line(std::string text, size_t width) {
  for (char& c : text)
    if (c == '\n') c = ' ';
  if (text.size() > width) text = text.substr(0, width - 3) + "...";
  return text;
}

std::string percent(double rate) {
  char text[16];
  std::snprintf(text, sizeof text, "%5.1f%%", rate * 100);
  return text;
}

// Flags of one mode given in the other: a UserError naming the first.
void reject_flags(const std::vector<CLI::Option*>& flags, const std::string& mode, const std::string& hint) {
  for (const CLI::Option* flag : flags)
    if (flag->count() > 0) throw UserError(flag->get_name() + " does not apply " + mode, hint);
}

struct LossOptions {
  std::string model, adapter, data;
  kernels::WeightFormat quant = kernels::WeightFormat::f32;
  kernels::DType dtype = kernels::DType::f32;
  bool double_quant = true, json = false;
  uint32_t batch = 4, max_length = 1024;
  double prompt_loss_weight = 0.1;
  int device = -1;
};

void evaluate_loss(const LossOptions& o) {
  train::EvalOptions options;
  options.batch = o.batch;
  options.max_length = o.max_length;
  options.prompt_loss_weight = o.prompt_loss_weight;
  if (!o.adapter.empty()) options.adapter = std::filesystem::path(o.adapter);
  options.base_format = o.quant;
  options.double_quant = o.double_quant;
  options.dtype = o.dtype;
  vk::ContextOptions context_options;
  context_options.device_index = o.device;
  vk::Context context(context_options);
  const auto start = std::chrono::steady_clock::now();
  train::EvalResult result = train::evaluate_model(context, o.model, o.data, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (o.json) {
    nlohmann::json out = {{"model", o.model},
                          {"data", o.data},
                          {"examples", result.examples},
                          {"tokens", result.tokens},
                          {"weighted_tokens", result.weight_sum},
                          {"loss", result.loss},
                          {"perplexity", result.perplexity},
                          {"seconds", seconds}};
    out["adapter"] = o.adapter.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.adapter);
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("model:           %s%s%s\n", o.model.c_str(), o.adapter.empty() ? "" : " + ", o.adapter.c_str());
  std::printf("data:            %s (%lld examples)\n", o.data.c_str(), static_cast<long long>(result.examples));
  std::printf("tokens:          %lld\n", static_cast<long long>(result.tokens));
  std::printf("weighted tokens: %.1f (prompt tokens weigh %g)\n", result.weight_sum, o.prompt_loss_weight);
  std::printf("mean loss:       %.6f\n", result.loss);
  std::printf("perplexity:      %.4f\n", result.perplexity);
  std::printf("time:            %s (%.0f tokens/s, model load included)\n", format_duration(seconds).c_str(),
              seconds > 0 ? double(result.tokens) / seconds : 0.0);
}
}  // namespace

void add_evaluate_command(CLI::App& app) {
  auto* command = app.add_subcommand("evaluate",
                                     "Score greedy generations on held-out prompt/completion pairs, "
                                     "or (--loss) the mean loss and perplexity on a JSONL file");
  struct Options {
    std::string model, adapter, data, keys, quant = "none", dtype = "fp32", double_quant = "true";
    size_t limit = 0, show = 4;
    uint32_t max_new_tokens = 64, batch = 4, max_length = 1024;
    double prompt_loss_weight = 0.1;
    bool compare_base = false, loss = false, json = false;
    int device = -1;
  };
  static Options o;
  command->add_option("--model", o.model, "HF model folder or .gguf file (the base)")->required();
  command->add_option("--adapter", o.adapter, "PEFT adapter folder to evaluate on top of the base");
  command->add_option("--data", o.data, "JSONL: prompt/completion pairs; with --loss any trainer format")->required();
  command->add_option("--quant", o.quant, "base format on load: " + enum_name_list(kernels::quant_names(), " | "));
  command->add_option("--dtype", o.dtype,
                      enum_name_list(kernels::dtype_names(), " | ") + " for embeddings, lm_head and dense weights");
  command->add_option("--device", o.device, "Vulkan device index");
  // Generation mode.
  const std::vector<CLI::Option*> generation_flags = {
      command->add_option("--json-keys", o.keys,
                          "comma list: the form is a JSON object with these keys, the content their values"),
      command->add_option("--limit", o.limit, "first N examples only"),
      command->add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate per prompt at most"),
      command->add_flag("--compare-base", o.compare_base,
                        "also score the base model without the adapter, side by side"),
      command->add_option("--show", o.show, "examples to print")};
  // Loss mode.
  command->add_flag("--loss", o.loss, "report mean weighted loss and perplexity instead of scoring generations");
  const std::vector<CLI::Option*> loss_flags = {
      command->add_option("--per-device-eval-batch-size", o.batch, "--loss: sequences per micro-batch (default 4)"),
      command->add_option("--max-length", o.max_length, "--loss: truncate sequences to this many tokens (1024)"),
      command->add_option("--prompt-loss-weight", o.prompt_loss_weight,
                          "--loss: prompt tokens' weight (0.1, as train)"),
      command->add_option("--double-quant", o.double_quant, "--loss, --quant nf4: quantize the absmax too (true)"),
      command->add_flag("--json", o.json, "--loss: print one JSON object")};
  command->footer(
      "Examples:\n  vktune evaluate --model base --adapter out --data test.jsonl --json-keys book,chapter\n"
      "  vktune evaluate --loss --model base --adapter out --data test.jsonl --json");
  command->callback([generation_flags, loss_flags] {
    const kernels::WeightFormat quant = enum_from_flag(kernels::quant_names(), o.quant, "--quant");
    const kernels::DType dtype = enum_from_flag(kernels::dtype_names(), o.dtype, "--dtype");
    if (o.loss) {
      reject_flags(generation_flags, "with --loss (it scores generations)", "drop it, or drop --loss");
      LossOptions loss;
      loss.model = o.model;
      loss.adapter = o.adapter;
      loss.data = o.data;
      loss.quant = quant;
      loss.dtype = dtype;
      if (o.double_quant != "true" && o.double_quant != "false")
        throw UserError("--double-quant '" + o.double_quant + "' is not a boolean", "use true or false");
      loss.double_quant = o.double_quant == "true";
      loss.json = o.json;
      loss.batch = o.batch;
      loss.max_length = o.max_length;
      loss.prompt_loss_weight = o.prompt_loss_weight;
      loss.device = o.device;
      if (o.batch == 0) throw UserError("--per-device-eval-batch-size must be at least 1", "the default is 4");
      if (o.max_length < 2) throw UserError("--max-length must be at least 2", "the default is 1024");
      evaluate_loss(loss);
      return;
    }
    reject_flags(loss_flags, "without --loss (it belongs to the loss mode)", "add --loss, or drop it");
    train::GenerationEvalOptions options;
    options.model = o.model;
    options.data = o.data;
    options.limit = o.limit;
    options.max_new_tokens = o.max_new_tokens;
    options.base_format = quant;
    options.dtype = dtype;
    for (size_t start = 0; start < o.keys.size();) {
      size_t end = o.keys.find(',', start);
      if (end == std::string::npos) end = o.keys.size();
      if (end > start) options.json_keys.push_back(o.keys.substr(start, end - start));
      start = end + 1;
    }
    vk::ContextOptions context_options;
    context_options.device_index = o.device;
    vk::Context context(context_options);
    std::optional<train::GenerationEvalResult> base;
    if (o.compare_base || o.adapter.empty()) {
      ProgressBar bar("base", static_cast<int64_t>(o.limit ? o.limit : 1));
      base = train::evaluate_generation(context, options, &bar);
      bar.finish();
    }
    std::optional<train::GenerationEvalResult> tuned;
    if (!o.adapter.empty()) {
      options.adapter = std::filesystem::path(o.adapter);
      ProgressBar bar("finetuned", static_cast<int64_t>(o.limit ? o.limit : 1));
      tuned = train::evaluate_generation(context, options, &bar);
      bar.finish();
    }
    const auto& any = tuned ? *tuned : *base;
    const bool keyed = !options.json_keys.empty();
    auto verdict = [keyed](const train::GeneratedExample& e) {
      return e.content_ok ? "right" : !keyed ? "wrong" : e.form_ok ? "form ok, content wrong" : "wrong form";
    };
    for (size_t i = 0; i < std::min(o.show, any.examples.size()); i++) {
      std::printf("\nprompt:    %s\n", one_line(any.examples[i].prompt, 110).c_str());
      std::printf("expected: %s\n", one_line(any.examples[i].reference, 110).c_str());
      if (base)
        std::printf("base:     %s  [%s]\n", one_line(base->examples[i].output, 100).c_str(),
                    verdict(base->examples[i]));
      if (tuned)
        std::printf("tuned:    %s  [%s]\n", one_line(tuned->examples[i].output, 100).c_str(),
                    verdict(tuned->examples[i]));
    }
    std::printf("\n%-34s %10s %10s\n", "metric (held-out examples)", base ? "base" : "", tuned ? "finetuned" : "");
    if (!options.json_keys.empty())
      std::printf("%-34s %10s %10s\n", "form: JSON with every key", base ? percent(base->form_rate).c_str() : "",
                  tuned ? percent(tuned->form_rate).c_str() : "");
    std::printf("%-34s %10s %10s\n", options.json_keys.empty() ? "content: exact match" : "content: every field right",
                base ? percent(base->content_rate).c_str() : "", tuned ? percent(tuned->content_rate).c_str() : "");
    if (!options.json_keys.empty())
      std::printf("%-34s %10s %10s\n", "fields right (of all keys)", base ? percent(base->field_rate).c_str() : "",
                  tuned ? percent(tuned->field_rate).c_str() : "");
    for (size_t i = 0; i < options.json_keys.size(); i++)  // which fields a model gets wrong
      std::printf("%-34s %10s %10s\n", ("  \"" + options.json_keys[i] + "\" right").c_str(),
                  base ? percent(base->key_rates[i]).c_str() : "", tuned ? percent(tuned->key_rates[i]).c_str() : "");
    std::printf("%-34s %10s %10s\n", "distinct answers", base ? std::to_string(base->distinct_outputs).c_str() : "",
                tuned ? std::to_string(tuned->distinct_outputs).c_str() : "");
    std::printf("(%zu examples)\n", any.examples.size());
  });
}

}  // namespace vkt::app
