#include "engine/train/soft_prompt_run.hpp"

#include "engine/base/error.hpp"
#include "engine/model/soft_prompt.hpp"

namespace vkt::train {

void validate_soft_prompt(const TrainConfig& c) {
  if (c.peft_type != spec::PeftType::prompt_tuning) return;
  if (c.num_virtual_tokens < 1 || c.num_virtual_tokens > 4096)
    throw UserError("--num-virtual-tokens " + std::to_string(c.num_virtual_tokens) + " is out of range",
                    "use 1 to 4096 (PEFT's examples use 8 to 20)");
  if (c.prompt_tuning_init != "random" && c.prompt_tuning_init != "text")
    throw UserError("--prompt-tuning-init " + c.prompt_tuning_init + " is unknown", "use random or text");
  if (c.prompt_tuning_init == "text" && c.prompt_tuning_init_text.empty())
    throw UserError("--prompt-tuning-init text needs --prompt-tuning-init-text",
                    "e.g. --prompt-tuning-init-text \"Classify the sentiment:\"");
  if (c.packing)
    throw UserError("--packing does not go with --peft-type prompt_tuning (PEFT prepends the prompt to each sequence)",
                    "drop --packing");
  if (c.objective != "sft")
    throw UserError("--objective " + c.objective + " does not go with --peft-type prompt_tuning yet",
                    "use --objective sft, or a LoRA adapter for preference training");
}

uint32_t virtual_tokens(const TrainConfig& c) {
  return c.peft_type == spec::PeftType::prompt_tuning ? static_cast<uint32_t>(c.num_virtual_tokens) : 0;
}

void set_soft_prompt(const TrainConfig& c, model::LoraSettings& lora) {
  lora.virtual_tokens = virtual_tokens(c);
  if (lora.virtual_tokens == 0) return;
  lora.targets.clear();
  const bool text = c.prompt_tuning_init == "text";
  lora.prompt_init = text ? "TEXT" : "RANDOM";
  lora.prompt_init_text = text ? c.prompt_tuning_init_text : "";
  lora.prompt_tokenizer = text ? c.model : "";
}

void init_soft_prompt(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                      const text::Tokenizer& tokenizer, uint64_t seed) {
  if (lora.peft_type != spec::PeftType::prompt_tuning) return;
  auto& buffers = *session.buffers;
  if (lora.prompt_init != "TEXT") {
    std::vector<float> values =
        model::prompt_random_init(lora.virtual_tokens, static_cast<uint32_t>(session.plan.shape.hidden), seed);
    context.upload(buffers.buffer("prompt_embeddings"), values.data());
    return;
  }
  std::vector<uint32_t> ids =
      model::prompt_init_ids(tokenizer.encode(lora.prompt_init_text, true), lora.virtual_tokens);
  context.upload(buffers.buffer("input.ids"), ids.data(), 0, ids.size() * 4);  // the next micro-batch overwrites it
  context.run([&](vk::Recorder& r) { session.transformer->record_prompt_init(r); });
}

}  // namespace vkt::train
