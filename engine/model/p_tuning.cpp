#include "engine/model/p_tuning.hpp"

#include <array>
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/error.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/kernels/random.hpp"
#include "engine/kernels/reduce.hpp"
#include "engine/kernels/relu.hpp"
#include "engine/model/p_tuning_lstm.hpp"
#include "engine/model/soft_prompt.hpp"
#include "engine/plan/prompt_encoder_plan.hpp"

namespace vkt::model {

using kernels::DType;

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
  std::vector<AdapterExtraTensor> tensors;
  if (settings.peft_type != spec::PeftType::p_tuning || !settings.train_encoder) return tensors;
  const uint32_t lstm_layers = settings.encoder_type == "LSTM" ? settings.encoder_layers : 0;
  for (const auto& t :
       plan::prompt_encoder_parameters(settings.virtual_tokens, shape.hidden, settings.encoder_hidden, lstm_layers))
    tensors.push_back({t.name, "prompt_encoder.default." + t.name.substr(15), t.shape});  // after "prompt_encoder."
  return tensors;
}

namespace {
// The three Linear layers: (weight, bias) names, in and out features.
struct EncoderLayer {
  const char *weight, *bias, *input, *output;
  uint32_t in, out;
};
std::array<EncoderLayer, 3> encoder_layers(uint32_t d, uint32_t h) {
  return {{{"prompt_encoder.mlp_head.0.weight", "prompt_encoder.mlp_head.0.bias", "prompt_encoder.embedding.weight",
            "prompt_encoder.hidden1", d, h},
           {"prompt_encoder.mlp_head.2.weight", "prompt_encoder.mlp_head.2.bias", "prompt_encoder.hidden1",
            "prompt_encoder.hidden2", h, h},
           {"prompt_encoder.mlp_head.4.weight", "prompt_encoder.mlp_head.4.bias", "prompt_encoder.hidden2",
            "prompt_embeddings", h, d}}};
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
  uint32_t key = 0x70000000u;  // one random stream per tensor, apart from LoRA's (layer * modules + module)
  for (const EncoderLayer& layer : encoder_layers(d, settings.encoder_hidden)) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(layer.in));
    std::vector<float> weight(uint64_t(layer.out) * layer.in), bias(layer.out);
    ref::random_uniform(weight.data(), weight.size(), uint32_t(seed), random::stream_init, 1, key++, -bound, bound);
    ref::random_uniform(bias.data(), bias.size(), uint32_t(seed), random::stream_init, 1, key++, -bound, bound);
    context.upload(buffers.buffer(layer.weight), weight.data());
    context.upload(buffers.buffer(layer.bias), bias.data());
  }
}

void record_prompt_encoder_forward(Recorder& r, const BufferSet& buffers, uint32_t n, uint32_t d, uint32_t h,
                                   float lstm_dropout) {
  if (lstm_encoder_layers(buffers) > 0) return record_lstm_encoder_forward(r, buffers, n, d, h, lstm_dropout);
  const auto layers = encoder_layers(d, h);
  for (size_t i = 0; i < layers.size(); i++) {
    const EncoderLayer& layer = layers[i];
    const BufferRange bias = buffers.range(layer.bias), out = buffers.range(layer.output);
    kernels::matmul_nt(r, buffers.range(layer.input), DType::f32, kernels::dense_f32(buffers.range(layer.weight)), out,
                       DType::f32, n, layer.out, layer.in, 1.0f, 0.0f, &bias);
    if (i + 1 < layers.size()) kernels::relu(r, out, n * layer.out);  // no ReLU after the last Linear
  }
}

void record_prompt_encoder_backward(Recorder& r, const BufferSet& buffers, uint32_t n, uint32_t d, uint32_t h,
                                    float lstm_dropout) {
  if (lstm_encoder_layers(buffers) > 0) return record_lstm_encoder_backward(r, buffers, n, d, h, lstm_dropout);
  // Layer by layer from the output: dY (n, out) -> d bias (column sums), d W = dYᵀ·X, dX = dY·W; dX
  // then through the ReLU that made X (zero where X was clipped).
  const char* grad_of_output[3] = {"prompt_encoder.grad_hidden1", "prompt_encoder.grad_hidden2",
                                   "prompt_encoder.grad_output"};
  const auto layers = encoder_layers(d, h);
  const BufferRange reduce = buffers.range("prompt_encoder.reduce");
  for (int i = 2; i >= 0; i--) {
    const EncoderLayer& layer = layers[size_t(i)];
    const std::string weight = layer.weight, bias = layer.bias;
    const BufferRange dy = buffers.range(grad_of_output[i]), x = buffers.range(layer.input);
    kernels::sum_rows(r, dy, buffers.range("grad." + bias), reduce, n, layer.out, true);
    kernels::matmul_tn(r, dy, DType::f32, x, DType::f32, buffers.range("grad." + weight), n, layer.out, layer.in, 1.0f,
                       1.0f);
    const BufferRange dx =
        i > 0 ? buffers.range(grad_of_output[i - 1]) : buffers.range("grad." + std::string(layer.input));
    kernels::matmul_nn(r, dy, DType::f32, kernels::dense_f32(buffers.range(weight)), dx, DType::f32, n, layer.out,
                       layer.in, 1.0f, i > 0 ? 0.0f : 1.0f);
    if (i > 0) kernels::relu_backward(r, x, dx, n * layer.in);
  }
}

}  // namespace vkt::model
