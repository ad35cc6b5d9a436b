#include "engine/train/prefix_tuning_run.hpp"

#include "engine/base/error.hpp"
#include "engine/model/prefix_tuning.hpp"
#include "engine/model/soft_prompt.hpp"

namespace vkt::train {

void validate_prefix_tuning(const TrainConfig& c) {
  if (c.peft_type != spec::PeftType::prefix_tuning) return;
  if (c.num_virtual_tokens < 1 || c.num_virtual_tokens > 4096)
    throw UserError("--num-virtual-tokens " + std::to_string(c.num_virtual_tokens) + " is out of range",
                    "use 1 to 4096 (PEFT's examples use 10 to 30)");
  if (c.packing)
    throw UserError(
        "--packing does not go with --peft-type prefix_tuning (PEFT puts the prefix before each "
        "sequence, and numbers its tokens after it)",
        "drop --packing");
  if (c.objective != "sft")
    throw UserError("--objective " + c.objective + " does not go with --peft-type prefix_tuning yet",
                    "use --objective sft, or a LoRA adapter for preference training");
}

uint32_t prefix_tokens(const TrainConfig& c) {
  return c.peft_type == spec::PeftType::prefix_tuning ? static_cast<uint32_t>(c.num_virtual_tokens) : 0;
}

void set_prefix_tuning(const TrainConfig& c, model::LoraSettings& lora) {
  lora.prefix_tokens = prefix_tokens(c);
  if (lora.prefix_tokens > 0) lora.targets.clear();
}

void init_prefix_tuning(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                        uint64_t seed) {
  if (lora.peft_type != spec::PeftType::prefix_tuning) return;
  std::vector<float> values = model::prompt_random_init(
      lora.prefix_tokens, static_cast<uint32_t>(model::prefix_width(session.plan.shape)), seed);
  context.upload(session.buffers->buffer("prefix.key_values"), values.data());
}

}  // namespace vkt::train
