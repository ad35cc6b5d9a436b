// `vktune generate`: text from a model (and optionally a PEFT adapter) with a KV cache; greedy
// when --temperature is 0, else temperature / top-k / top-p sampling with --seed. --suffix fills the
// middle between --prompt and it (FIM tokens, PSM order); --data FILE --output OUT.jsonl writes the
// model's answer to every prompt of a training file (a teacher's answers, the "distillation path").
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/base/files.hpp"
#include "engine/model/config.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/text/tokenizer.hpp"
#include "engine/train/dataset.hpp"
#include "engine/train/fim.hpp"

namespace vkt::app {

namespace {
// --data: the prompt of every example (the text before its first completion segment; a {"text"}
// example is all prompt), answered and written as {"prompt", "completion"} JSONL.
void generate_answers(model::Generator& generator, const text::Tokenizer& tokenizer,
                      const model::SamplingOptions& sampling, const std::string& model_dir, const std::string& data,
                      const std::string& output) {
  const std::vector<train::ParsedExample> examples = train::read_jsonl(data, model::load_model_chat_format(model_dir));
  std::string lines;
  for (size_t i = 0; i < examples.size(); i++) {
    const train::ParsedExample& example = examples[i];
    std::string prompt;
    for (const auto& segment : example.segments) {
      if (segment.completion && example.format != train::ExampleFormat::text) break;  // a text is all prompt
      prompt += segment.text;
    }
    // A chat template writes its own BOS text: the post-processor's BOS only for the other formats.
    std::vector<uint32_t> ids = tokenizer.encode(prompt, example.format != train::ExampleFormat::messages);
    const std::string completion = tokenizer.decode(generator.generate(ids, sampling), true);
    lines += nlohmann::json({{"prompt", prompt}, {"completion", completion}}).dump() + "\n";
    std::fprintf(stderr, "\r%zu / %zu answered", i + 1, examples.size());
  }
  std::fprintf(stderr, "\n");
  write_file_atomically(output, lines);
  std::printf("wrote %zu answers to %s\n", examples.size(), output.c_str());
}
}  // namespace

void add_generate_command(CLI::App& app) {
  auto* command = app.add_subcommand("generate", "Generate text with a model (and a PEFT adapter), KV-cached");
  struct Options {
    std::string model, adapter, prompt, quant = "none", dtype = "fp32";
    std::string suffix, fim_tokens, data, output;
    uint32_t max_new_tokens = 128, top_k = 0, max_tokens = 2048;
    float temperature = 0, top_p = 1;
    uint64_t seed = 0;
    int device = -1;
  };
  static Options o;
  command->add_option("--model", o.model, "HF model folder or .gguf file")->required();
  command->add_option("--adapter", o.adapter,
                      "PEFT adapter folder (LoRA, DoRA, IA3; or vktune BitFit) applied on the fly");
  command->add_option("--prompt", o.prompt, "the prompt text (with --suffix: the text before the gap)");
  command->add_option("--suffix", o.suffix,
                      "fill in the middle: the text after the gap (the prompt is <fim_prefix> PROMPT <fim_suffix> "
                      "SUFFIX <fim_middle>)");
  command->add_option("--fim-tokens", o.fim_tokens,
                      "with --suffix: the FIM tokens PRE,SUF,MID (default: the tokenizer's <fim_prefix>... or "
                      "<|fim_prefix|>...)");
  command->add_option("--data", o.data,
                      "answer every prompt of this JSONL (the formats `train` reads: text, prompt/completion, "
                      "messages) instead of --prompt");
  command->add_option("--output", o.output,
                      "with --data: write {\"prompt\", \"completion\"} lines here (train data for a student)");
  command->add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate at most (stops at EOS)");
  command->add_option("--temperature", o.temperature, "0: greedy; else sample from softmax(logits / T)");
  command->add_option("--top-k", o.top_k, "sample among the k most likely tokens (0: all)");
  command->add_option("--top-p", o.top_p, "nucleus sampling: the smallest set with this much probability");
  command->add_option("--seed", o.seed, "sampling seed");
  command->add_option("--quant", o.quant,
                      "quantize the base on load: " + enum_name_list(kernels::quant_names(), " | "));
  command->add_option("--dtype", o.dtype, enum_name_list(kernels::dtype_names(), " | ") + " for dense weights");
  command->add_option("--max-tokens", o.max_tokens, "KV cache length (prompt + new tokens)");
  command->add_option("--device", o.device, "Vulkan device index");
  command->callback([] {
    const kernels::WeightFormat quant = enum_from_flag(kernels::quant_names(), o.quant, "--quant");
    const kernels::DType dtype = enum_from_flag(kernels::dtype_names(), o.dtype, "--dtype");
    model::SamplingOptions sampling;
    sampling.max_new_tokens = o.max_new_tokens;
    sampling.temperature = o.temperature;
    sampling.top_k = o.top_k;
    sampling.top_p = o.top_p;
    sampling.seed = o.seed;
    model::validate_sampling(sampling);  // before the model loads
    if (o.data.empty() == o.prompt.empty() && o.suffix.empty())
      throw UserError("give either --prompt TEXT or --data FILE --output OUT.jsonl", "vktune generate --help");
    if (!o.data.empty() && (o.output.empty() || !o.prompt.empty() || !o.suffix.empty()))
      throw UserError("--data needs --output OUT.jsonl (and no --prompt or --suffix)",
                      "vktune generate --model DIR --data prompts.jsonl --output answers.jsonl");
    text::Tokenizer tokenizer = model::load_model_tokenizer(o.model);
    model::ModelConfig config = model::load_model_config(o.model);
    model::check_tokenizer_fits(config, tokenizer.vocab_size(), model::tokenizer_location(o.model));
    vk::ContextOptions context_options;
    context_options.device_index = o.device;
    vk::Context context(context_options);
    model::GeneratorOptions options;
    options.model = o.model;
    if (!o.adapter.empty()) options.adapter = std::filesystem::path(o.adapter);
    options.dtype = dtype;
    options.base_format = quant;
    if (options.base_format == kernels::WeightFormat::f32)
      options.base_format = options.dtype == kernels::DType::f16    ? kernels::WeightFormat::f16
                            : options.dtype == kernels::DType::bf16 ? kernels::WeightFormat::bf16
                                                                    : kernels::WeightFormat::f32;
    options.max_tokens = o.max_tokens;
    model::Generator generator(context, options);
    for (int64_t id : config.eos_token_ids) sampling.stop_ids.push_back(static_cast<uint32_t>(id));
    if (auto eos = tokenizer.eos_id()) sampling.stop_ids.push_back(*eos);
    if (!o.data.empty()) return generate_answers(generator, tokenizer, sampling, o.model, o.data, o.output);
    std::vector<uint32_t> prompt = tokenizer.encode(o.prompt, true);
    if (!o.suffix.empty()) {  // PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> -> the middle
      const train::FimTokenIds fim =
          train::find_fim_tokens(tokenizer, o.fim_tokens, model::tokenizer_location(o.model));
      prompt.clear();
      if (tokenizer.adds_bos() && tokenizer.bos_id()) prompt.push_back(*tokenizer.bos_id());
      auto append = [&](const std::string& text) {
        for (uint32_t id : text.empty() ? std::vector<uint32_t>{} : tokenizer.encode(text, false)) prompt.push_back(id);
      };
      prompt.push_back(fim.prefix);
      append(o.prompt);
      prompt.push_back(fim.suffix);
      append(o.suffix);
      prompt.push_back(fim.middle);
    }
    std::printf("%s", o.prompt.c_str());
    std::vector<uint32_t> generated;
    std::string shown;
    generator.generate(prompt, sampling, [&](uint32_t token) {
      // Decode everything so far and print what is new, so multi-byte characters come out whole.
      generated.push_back(token);
      std::string text = tokenizer.decode(generated, true);
      if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
        std::printf("%s", text.c_str() + shown.size());
        std::fflush(stdout);
        shown = text;
      }
    });
    std::printf("%s\n", o.suffix.c_str());
  });
}

}  // namespace vkt::app
