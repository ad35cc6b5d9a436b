#include "engine/train/prefix_tuning_run.hpp"

#include "engine/base/error.hpp"
#include "engine/model/prefix_tuning.hpp"
#include "engine/model/soft_prompt.hpp"

namespace vkt::train {

void validate_prefix_tuning(const TrainConfig& c) {
  if (c.prefix_projection && c.peft_type != spec::PeftType::prefix_tuning)
    throw UserError("--prefix-projection goes with --peft-type prefix_tuning", "drop --prefix-projection");
  if (c.peft_type != spec::PeftType::prefix_tuning) return;
  if (c.prefix_projection && !c.adapter.empty())
    throw UserError(
        "--prefix-projection does not go with --adapter (a saved adapter holds the prefix, not the "
        "encoder that made it)",
        "drop --prefix-projection to train the saved prefix further, or resume from a checkpoint-N");
  if (c.prefix_projection && (c.encoder_hidden_size < 0 || c.encoder_hidden_size > 65536))
    throw UserError("--encoder-hidden-size " + std::to_string(c.encoder_hidden_size) + " is out of range",
                    "use 1 to 65536, or 0 for the key/value width (PEFT's token_dim)");
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

uint64_t prefix_projection_hidden(const TrainConfig& c, const spec::ModelShape* model) {
  if (c.peft_type != spec::PeftType::prefix_tuning || !c.prefix_projection) return 0;
  if (c.encoder_hidden_size > 0) return static_cast<uint64_t>(c.encoder_hidden_size);
  return model ? model->kv_heads * model->head_dim : 0;  // PEFT: encoder_hidden_size defaults to token_dim
}

void set_prefix_tuning(const TrainConfig& c, model::LoraSettings& lora, uint64_t projection_hidden) {
  lora.prefix_tokens = prefix_tokens(c);
  if (lora.prefix_tokens > 0) lora.targets.clear();
  if (lora.prefix_tokens == 0 || projection_hidden == 0) return;
  lora.prefix_projection = lora.train_encoder = true;
  lora.encoder_hidden = static_cast<uint32_t>(projection_hidden);
}

void init_prefix_tuning(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                        uint64_t seed) {
  if (lora.peft_type != spec::PeftType::prefix_tuning) return;
  if (lora.prefix_projection) {  // the encoder's parameters; its forward makes the prefix
    model::init_prefix_encoder(context, *session.buffers, session.plan.shape, lora, seed);
    context.run([&](vk::Recorder& r) { session.transformer->record_prompt_encoder(r); });
    return;
  }
  std::vector<float> values = model::prompt_random_init(
      lora.prefix_tokens, static_cast<uint32_t>(model::prefix_width(session.plan.shape)), seed);
  context.upload(session.buffers->buffer("prefix.key_values"), values.data());
}

}  // namespace vkt::train
