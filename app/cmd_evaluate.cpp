// `vktune evaluate`: greedy generation on held-out prompt/completion pairs, scored for form (JSON
// with the required keys) and content (fields equal to the reference); with --compare-base the
// base model alone is scored too and a few answers are shown side by side.
#include <cstdio>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/progress.hpp"
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
}  // namespace

void add_evaluate_command(CLI::App& app) {
  auto* command = app.add_subcommand("evaluate", "Score greedy generations on held-out prompt/completion pairs");
  struct Options {
    std::string model, adapter, data, keys, quant = "none";
    size_t limit = 0, show = 4;
    uint32_t max_new_tokens = 64;
    bool compare_base = false;
    int device = -1;
  };
  static Options o;
  command->add_option("--model", o.model, "HF model folder (the base)")->required();
  command->add_option("--adapter", o.adapter, "PEFT adapter folder to evaluate on top of the base");
  command->add_option("--data", o.data, "prompt/completion JSONL")->required();
  command->add_option("--json-keys", o.keys, "comma list: the form is a JSON object with these keys, the content their values");
  command->add_option("--limit", o.limit, "first N examples only");
  command->add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate per prompt at most");
  command->add_flag("--compare-base", o.compare_base, "also score the base model without the adapter, side by side");
  command->add_option("--show", o.show, "examples to print");
  command->add_option("--quant", o.quant, "base format on load: " + enum_name_list(kernels::quant_names(), " | "));
  command->add_option("--device", o.device, "Vulkan device index");
  command->callback([] {
    const kernels::WeightFormat quant = enum_from_flag(kernels::quant_names(), o.quant, "--quant");
    train::GenerationEvalOptions options;
    options.model = o.model;
    options.data = o.data;
    options.limit = o.limit;
    options.max_new_tokens = o.max_new_tokens;
    options.base_format = quant;
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
      if (base) std::printf("base:     %s  [%s]\n", one_line(base->examples[i].output, 100).c_str(), verdict(base->examples[i]));
      if (tuned) std::printf("tuned:    %s  [%s]\n", one_line(tuned->examples[i].output, 100).c_str(), verdict(tuned->examples[i]));
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
    std::printf("(%zu examples)\n", any.examples.size());
  });
}

}  // namespace vkt::app
