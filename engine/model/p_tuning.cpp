#include "engine/model/p_tuning.hpp"

#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/model/encoder_mlp.hpp"
#include "engine/model/p_tuning_lstm.hpp"
#include "engine/model/prefix_tuning.hpp"
#include "engine/model/soft_prompt.hpp"
#include "engine/plan/prompt_encoder_plan.hpp"

namespace vkt::model {

nlohmann::json peft_p_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                    const std::string& base_model) {
  // PromptLearningConfig's keys as prompt tuning writes them, less PromptTuningConfig's own, plus the encoder's.
  nlohmann::json config = peft_prompt_tuning_config(shape, settings, base_model);
  for (const char* key :
       {"prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_kwargs", "tokenizer_name_or_path"})
    config.erase(key);
  config["peft_type"] = "P_TUNING";
  config["encoder_dropout"] = settings.encoder_dropout;
  config["encoder_hidden_size"] = settings.encoder_hidden;
  config["encoder_num_layers"] = settings.encoder_layers;
  config["encoder_reparameterization_type"] = settings.encoder_type;
  return config;
}

void read_p_tuning_fields(const nlohmann::json& config, const std::string& path, LoraSettings& settings) {
  settings.peft_type = spec::PeftType::p_tuning;
  settings.train_encoder = false;  // PEFT saves the encoder's output only
  const nlohmann::json& hidden = config.contains("encoder_hidden_size") ? config["encoder_hidden_size"] : nullptr;
  if (hidden.is_number_unsigned()) settings.encoder_hidden = hidden.get<uint32_t>();
  if (config.contains("encoder_reparameterization_type") && config["encoder_reparameterization_type"].is_string())
    settings.encoder_type = config["encoder_reparameterization_type"].get<std::string>();
  if (settings.encoder_type != "MLP" && settings.encoder_type != "LSTM")
    throw UserError(path + ": \"encoder_reparameterization_type\" is " + settings.encoder_type,
                    "PEFT's P-tuning encoders are MLP and LSTM");
  if (config.contains("encoder_num_layers") && config["encoder_num_layers"].is_number_unsigned())
    settings.encoder_layers = config["encoder_num_layers"].get<uint32_t>();
  if (config.contains("encoder_dropout") && config["encoder_dropout"].is_number())
    settings.encoder_dropout = config["encoder_dropout"].get<float>();
}

std::vector<AdapterExtraTensor> prompt_encoder_tensors(const spec::ModelShape& shape, const LoraSettings& settings) {
  if (settings.peft_type == spec::PeftType::prefix_tuning) return prefix_encoder_tensors(shape, settings);
  std::vector<AdapterExtraTensor> tensors;
  if (settings.peft_type != spec::PeftType::p_tuning || !settings.train_encoder) return tensors;
  const uint32_t lstm_layers = settings.encoder_type == "LSTM" ? settings.encoder_layers : 0;
  for (const auto& t :
       plan::prompt_encoder_parameters(settings.virtual_tokens, shape.hidden, settings.encoder_hidden, lstm_layers))
    tensors.push_back({t.name, "prompt_encoder.default." + t.name.substr(15), t.shape});  // after "prompt_encoder."
  return tensors;
}

namespace {
// The three Linear layers (ReLU after the first two), in and out features: D -> H -> H -> D.
std::vector<EncoderLinear> encoder_layers(uint32_t d, uint32_t h) {
  using enum EncoderActivation;
  return {{"prompt_encoder.mlp_head.0.weight", "prompt_encoder.mlp_head.0.bias", "prompt_encoder.embedding.weight",
           "prompt_encoder.hidden1", "prompt_encoder.grad_hidden1", d, h, relu},
          {"prompt_encoder.mlp_head.2.weight", "prompt_encoder.mlp_head.2.bias", "prompt_encoder.hidden1",
           "prompt_encoder.hidden2", "prompt_encoder.grad_hidden2", h, h, relu},
          {"prompt_encoder.mlp_head.4.weight", "prompt_encoder.mlp_head.4.bias", "prompt_encoder.hidden2",
           "prompt_embeddings", "prompt_encoder.grad_output", h, d, none}};
}
}  // namespace

void init_prompt_encoder(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape,
                         const LoraSettings& settings, uint64_t seed) {
  if (prompt_encoder_tensors(shape, settings).empty()) return;
  const auto d = static_cast<uint32_t>(shape.hidden);
  if (settings.encoder_type == "LSTM")
    return init_lstm_prompt_encoder(context, buffers, settings.virtual_tokens, d, settings.encoder_hidden, seed,
                                    0x70000000u);
  std::vector<float> table = prompt_random_init(settings.virtual_tokens, d, seed);
  context.upload(buffers.buffer("prompt_encoder.embedding.weight"), table.data());
  // One random stream per tensor, apart from LoRA's (layer * modules + module).
  init_encoder_mlp(context, buffers, encoder_layers(d, settings.encoder_hidden), seed, 0x70000000u);
}

void record_prompt_encoder_forward(Recorder& r, const BufferSet& buffers, uint32_t n, uint32_t d, uint32_t h,
                                   float lstm_dropout) {
  if (lstm_encoder_layers(buffers) > 0) return record_lstm_encoder_forward(r, buffers, n, d, h, lstm_dropout);
  record_encoder_mlp_forward(r, buffers, encoder_layers(d, h), n);
}

void record_prompt_encoder_backward(Recorder& r, const BufferSet& buffers, uint32_t n, uint32_t d, uint32_t h,
                                    float lstm_dropout) {
  if (lstm_encoder_layers(buffers) > 0) return record_lstm_encoder_backward(r, buffers, n, d, h, lstm_dropout);
  record_encoder_mlp_backward(r, buffers, encoder_layers(d, h), n, buffers.range("prompt_encoder.reduce"));
}

}  // namespace vkt::model
