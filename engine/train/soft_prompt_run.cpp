#include "engine/train/soft_prompt_run.hpp"

#include "engine/base/error.hpp"
#include "engine/model/p_tuning.hpp"
#include "engine/model/prefix_tuning.hpp"
#include "engine/model/soft_prompt.hpp"

namespace vkt::train {

namespace {
void validate_prompt_encoder(const TrainConfig& c) {
  if (c.prompt_tuning_init != "random")
    throw UserError("--prompt-tuning-init " + c.prompt_tuning_init + " does not go with --peft-type p_tuning",
                    "P-tuning's encoder starts from random embeddings (PEFT's PromptEncoder): drop the flag");
  if (c.encoder_reparameterization_type != "MLP" && c.encoder_reparameterization_type != "LSTM")
    throw UserError("--encoder-reparameterization-type " + c.encoder_reparameterization_type + " is unknown",
                    "use MLP or LSTM (PEFT's PromptEncoderReparameterizationType)");
  if (c.encoder_hidden_size < 0 || c.encoder_hidden_size > 65536)
    throw UserError("--encoder-hidden-size " + std::to_string(c.encoder_hidden_size) + " is out of range",
                    "use 1 to 65536, or 0 for the model's hidden size");
  if (c.encoder_num_layers < 1) throw UserError("--encoder-num-layers must be at least 1", "PEFT's default is 2");
  if (!(c.encoder_dropout >= 0 && c.encoder_dropout < 1))
    throw UserError("--encoder-dropout must be in [0, 1)", "PEFT's default is 0");
  if (c.encoder_reparameterization_type == "LSTM" && c.encoder_num_layers > 64)
    throw UserError("--encoder-num-layers " + std::to_string(c.encoder_num_layers) + " is out of range for LSTM",
                    "use 1 to 64 (PEFT's default is 2)");
  // --encoder-dropout with the LSTM: torch.nn.LSTM's dropout between layers, while training
  // (engine/model/p_tuning_lstm.hpp); the MLP encoder records it only, as PEFT's has none.
}
}  // namespace

void validate_soft_prompt(const TrainConfig& c) {
  if (c.peft_type != spec::PeftType::prompt_tuning && c.peft_type != spec::PeftType::p_tuning) return;
  const std::string type = spec::peft_type_name(c.peft_type);
  if (c.num_virtual_tokens < 1 || c.num_virtual_tokens > 4096)
    throw UserError("--num-virtual-tokens " + std::to_string(c.num_virtual_tokens) + " is out of range",
                    "use 1 to 4096 (PEFT's examples use 8 to 20)");
  if (c.peft_type == spec::PeftType::p_tuning) validate_prompt_encoder(c);
  if (c.prompt_tuning_init != "random" && c.prompt_tuning_init != "text")
    throw UserError("--prompt-tuning-init " + c.prompt_tuning_init + " is unknown", "use random or text");
  if (c.prompt_tuning_init == "text" && c.prompt_tuning_init_text.empty())
    throw UserError("--prompt-tuning-init text needs --prompt-tuning-init-text",
                    "e.g. --prompt-tuning-init-text \"Classify the sentiment:\"");
  if (c.packing)
    throw UserError("--packing does not go with --peft-type " + type + " (PEFT prepends the prompt to each sequence)",
                    "drop --packing");
  if (c.objective != "sft")
    throw UserError("--objective " + c.objective + " does not go with --peft-type " + type + " yet",
                    "use --objective sft, or a LoRA adapter for preference training");
}

uint32_t virtual_tokens(const TrainConfig& c) {
  const bool soft_prompt = c.peft_type == spec::PeftType::prompt_tuning || c.peft_type == spec::PeftType::p_tuning;
  return soft_prompt ? static_cast<uint32_t>(c.num_virtual_tokens) : 0;
}

uint64_t prompt_encoder_hidden(const TrainConfig& c, const spec::ModelShape* model) {
  if (c.peft_type != spec::PeftType::p_tuning) return 0;
  return c.encoder_hidden_size > 0 ? static_cast<uint64_t>(c.encoder_hidden_size) : model ? model->hidden : 0;
}

uint32_t prompt_encoder_lstm_layers(const TrainConfig& c) {
  const bool lstm = c.peft_type == spec::PeftType::p_tuning && c.encoder_reparameterization_type == "LSTM";
  return lstm ? static_cast<uint32_t>(c.encoder_num_layers) : 0;
}

void set_soft_prompt(const TrainConfig& c, model::LoraSettings& lora, uint64_t encoder_hidden) {
  lora.virtual_tokens = virtual_tokens(c);
  if (lora.virtual_tokens == 0) return;
  lora.targets.clear();
  const bool text = c.prompt_tuning_init == "text";
  lora.prompt_init = text ? "TEXT" : "RANDOM";
  lora.prompt_init_text = text ? c.prompt_tuning_init_text : "";
  lora.prompt_tokenizer = text ? c.model : "";
  if (c.peft_type != spec::PeftType::p_tuning) return;
  lora.encoder_hidden = static_cast<uint32_t>(encoder_hidden);
  lora.encoder_type = c.encoder_reparameterization_type;
  lora.encoder_layers = static_cast<uint32_t>(c.encoder_num_layers);
  lora.encoder_dropout = static_cast<float>(c.encoder_dropout);
  lora.train_encoder = true;
}

void init_soft_prompt(vk::Context& context, model::ModelSession& session, const model::LoraSettings& lora,
                      const text::Tokenizer& tokenizer, uint64_t seed) {
  if (lora.peft_type == spec::PeftType::p_tuning) {  // the encoder's parameters; its forward makes the prompt
    model::init_prompt_encoder(context, *session.buffers, session.plan.shape, lora, seed);
    context.run([&](vk::Recorder& r) { session.transformer->record_prompt_encoder(r); });
    return;
  }
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

void save_prompt_encoder(vk::Context& context, const model::BufferSet& buffers, const spec::ModelShape& shape,
                         const model::LoraSettings& lora, const std::filesystem::path& directory) {
  std::vector<model::AdapterExtraTensor> tensors = model::prompt_encoder_tensors(shape, lora);
  if (tensors.empty()) return;
  std::vector<model::TensorToWrite> out;
  for (const model::AdapterExtraTensor& t : tensors) {
    const vk::Buffer* buffer = &buffers.buffer(t.buffer);
    vk::Context* device = &context;
    out.push_back({t.buffer, model::FileDtype::F32, t.shape, [buffer, device](model::TensorSink& sink) {
                     std::vector<float> values(buffer->size() / 4);
                     device->download(*buffer, values.data());
                     sink.write(values.data(), values.size() * 4);
                   }});
  }
  model::write_safetensors(directory / prompt_encoder_file, std::move(out));
}

void load_prompt_encoder(vk::Context& context, model::BufferSet& buffers, const spec::ModelShape& shape,
                         const model::LoraSettings& lora, const std::filesystem::path& directory) {
  std::vector<model::AdapterExtraTensor> tensors = model::prompt_encoder_tensors(shape, lora);
  if (tensors.empty()) return;
  const std::filesystem::path path = directory / prompt_encoder_file;
  if (!std::filesystem::exists(path))
    throw UserError(path.string() + " is missing: the checkpoint has no prompt encoder",
                    "resume from a checkpoint of the same run (--peft-type p_tuning, or prefix_tuning with "
                    "--prefix-projection)");
  model::SafetensorsFile file(path);
  for (const model::AdapterExtraTensor& t : tensors) {
    const model::TensorView* tensor = file.find(t.buffer);
    if (!tensor || tensor->shape != t.shape)
      throw UserError(path.string() + ": no tensor " + t.buffer + " of this run's shape",
                      "resume with the checkpoint's --num-virtual-tokens, --encoder-hidden-size, "
                      "--encoder-reparameterization-type and --encoder-num-layers");
    std::vector<float> values = model::to_fp32(*tensor);
    context.upload(buffers.buffer(t.buffer), values.data());
  }
  context.run([&](vk::Recorder& r) {
    if (lora.peft_type == spec::PeftType::prefix_tuning)
      model::record_prefix_encoder_forward(r, buffers, shape, lora);
    else
      model::record_prompt_encoder_forward(r, buffers, lora.virtual_tokens, static_cast<uint32_t>(shape.hidden),
                                           lora.encoder_hidden);
  });
}

}  // namespace vkt::train
