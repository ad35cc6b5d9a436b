// `vktune generate`: text from a model (and optionally a PEFT adapter) with a KV cache; greedy
// when --temperature is 0, else temperature / top-k / top-p sampling with --seed.
#include <cstdio>

#include "app/commands.hpp"
#include "engine/base/error.hpp"
#include "engine/model/generate.hpp"
#include "engine/model/gguf_tokenizer.hpp"
#include "engine/text/tokenizer.hpp"

namespace vkt::app {

void add_generate_command(CLI::App& app) {
  auto* command = app.add_subcommand("generate", "Generate text with a model (and a PEFT adapter), KV-cached");
  struct Options {
    std::string model, adapter, prompt, quant = "none", dtype = "fp32";
    uint32_t max_new_tokens = 128, top_k = 0, max_tokens = 2048;
    float temperature = 0, top_p = 1;
    uint64_t seed = 0;
    int device = -1;
  };
  static Options o;
  command->add_option("--model", o.model, "HF model folder or .gguf file")->required();
  command->add_option("--adapter", o.adapter,
                      "PEFT adapter folder (LoRA, DoRA, IA3; or vktune BitFit) applied on the fly");
  command->add_option("--prompt", o.prompt, "the prompt text")->required();
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
    std::vector<uint32_t> prompt = tokenizer.encode(o.prompt, true);
    for (int64_t id : config.eos_token_ids) sampling.stop_ids.push_back(static_cast<uint32_t>(id));
    if (auto eos = tokenizer.eos_id()) sampling.stop_ids.push_back(*eos);
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
    std::printf("\n");
  });
}

}  // namespace vkt::app
