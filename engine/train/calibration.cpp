#include "engine/train/calibration.hpp"

#include <cmath>

#include "engine/kernels/optimizer.hpp"
#include "engine/train/evaluate.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::train {

std::map<std::string, std::vector<float>> calibration_column_norms(vk::Context& context,
                                                                   const std::filesystem::path& model_dir,
                                                                   const std::filesystem::path& data,
                                                                   uint32_t max_length, uint32_t batch) {
  // Every real token counts the same: prompt tokens weigh 1 (their weight only marks them real).
  EvalData tokens = tokenize_eval_file(model_dir, data, max_length, 1.0);
  spec::RunSettings settings;
  settings.method = spec::Method::lora;
  settings.training = true;  // every layer's activations stay in act.layers.N.* (no checkpointing)
  settings.target_modules = {};
  settings.batch = batch;
  settings.seq_len = tokens.seq_len;
  settings.lora_dropout = 0;
  auto session = model::open_model(context, model_dir, settings, nullptr);
  auto& buffers = *session->buffers;
  const model::ModelConfig& config = session->config;
  BatcherSettings batching;
  batching.batch = batch;
  batching.seq_len = tokens.seq_len;
  batching.shuffle = false;
  batching.wrap_epochs = false;
  batching.pad_id = tokens.pad_id;
  Batcher batcher(tokens.examples, batching);
  kernels::StepState state;
  state.spare[0] = 1.0f;
  kernels::write_step_state(context, buffers.buffer("step_state"), state);

  // (activation buffer, width, the weights it feeds)
  struct Input {
    std::string buffer;
    int64_t width;
    std::vector<std::string> modules;
  };
  const bool fused = config.fused_projections();
  const std::vector<Input> inputs = {
      {"norm_attn", config.hidden_size,
       fused ? std::vector<std::string>{"self_attn.qkv_proj"}
             : std::vector<std::string>{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}},
      {"attn", config.q_size(), {"self_attn.o_proj"}},
      {"norm_mlp", config.hidden_size,
       fused ? std::vector<std::string>{"mlp.gate_up_proj"} : std::vector<std::string>{"mlp.gate_proj", "mlp.up_proj"}},
      {"act", config.intermediate_size, {"mlp.down_proj"}}};
  const auto layers = static_cast<size_t>(config.num_hidden_layers);
  std::vector<std::vector<std::vector<double>>> squares(layers);  // [layer][input] (width)
  for (auto& layer : squares)
    for (const Input& input : inputs) layer.emplace_back(static_cast<size_t>(input.width), 0.0);
  vk::Sequence forward(context);
  forward.record([&](vk::Recorder& r) { session->transformer->record_forward(r, true, false); });
  std::vector<float> values;
  for (int64_t b = 0; b < batcher.micro_batches_per_epoch(); b++) {
    const MicroBatch micro = batcher.next();
    upload_micro_batch(context, buffers, micro);
    context.submit({&forward});  // waits: the activations are read next
    const size_t rows = micro.ids.size();
    std::vector<bool> real(rows);  // a token is real when it predicts or is predicted with weight > 0
    for (size_t t = 0; t < rows; t++)
      real[t] = micro.weights[t] > 0 || (t % micro.seq_len != 0 && micro.weights[t - 1] > 0);
    for (size_t layer = 0; layer < layers; layer++)
      for (size_t i = 0; i < inputs.size(); i++) {
        const auto width = static_cast<size_t>(inputs[i].width);
        values.resize(rows * width);
        context.download(buffers.buffer("act.layers." + std::to_string(layer) + "." + inputs[i].buffer), values.data(),
                         0, values.size() * 4);
        std::vector<double>& sum = squares[layer][i];
        for (size_t t = 0; t < rows; t++)
          if (real[t])
            for (size_t j = 0; j < width; j++) sum[j] += double(values[t * width + j]) * double(values[t * width + j]);
      }
  }
  std::map<std::string, std::vector<float>> norms;
  for (size_t layer = 0; layer < layers; layer++)
    for (size_t i = 0; i < inputs.size(); i++) {
      std::vector<float> norm(squares[layer][i].size());
      for (size_t j = 0; j < norm.size(); j++) norm[j] = static_cast<float>(std::sqrt(squares[layer][i][j]));
      for (const std::string& module : inputs[i].modules)
        norms["model.layers." + std::to_string(layer) + "." + module + ".weight"] = norm;
    }
  return norms;
}

}  // namespace vkt::train
