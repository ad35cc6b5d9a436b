#pragma once
// PEFT's P-tuning (PromptEncoderConfig / PromptEncoder, peft 0.21, MLP reparameterization): the
// soft prompt (soft_prompt.hpp) is the output of a small encoder on the virtual tokens' own table,
//   prompt = L4(relu(L2(relu(L0(E)))))   E (N, D) ~ N(0, 1); L0: D -> H, L2: H -> H, L4: H -> D
// (torch.nn.Linear: weight (out, in) + bias, kaiming-uniform init). While training, the encoder runs
// on the device before each forward (and after each update), its output fills prompt_embeddings, and
// the prompt's gradient flows back through it into its parameters (engine/plan/prompt_encoder_plan.hpp
// names them). PEFT's save_pretrained writes only the encoder's output, as "prompt_embeddings": a
// P_TUNING adapter is, for inference, a prompt-tuning one. Checkpoints keep the encoder
// (prompt_encoder.safetensors) so a resume continues it exactly. LSTM reparameterization:
// p_tuning_lstm.hpp (chosen by encoder_type; the functions below dispatch to it).
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "engine/model/adapter.hpp"
#include "engine/model/buffers.hpp"
#include "engine/model/linear.hpp"

namespace vkt::model {

// PEFT's adapter_config.json of a P-tuning adapter (PromptEncoderConfig's keys as PEFT writes them).
nlohmann::json peft_p_tuning_config(const spec::ModelShape& shape, const LoraSettings& settings,
                                    const std::string& base_model);
// The encoder fields of a "P_TUNING" adapter_config.json into `settings` (peft_type p_tuning; the
// encoder is not in the file, so train_encoder stays false); UserError naming `path` and the field.
void read_p_tuning_fields(const nlohmann::json& config, const std::string& path, LoraSettings& settings);
// The encoder's parameters, their buffer names and PEFT's named_parameters names (adapter "default");
// for prefix tuning, its prefix encoder's (prefix_encoder_tensors): what checkpoints keep.
std::vector<AdapterExtraTensor> prompt_encoder_tensors(const spec::ModelShape& shape, const LoraSettings& settings);
// PEFT's initialisation, keyed by `seed`: the embedding N(0, 1) (prompt_random_init), each Linear's
// weight and bias U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_(a=sqrt(5)) and nn.Linear's bias init).
void init_prompt_encoder(vk::Context& context, BufferSet& buffers, const spec::ModelShape& shape,
                         const LoraSettings& settings, uint64_t seed);
// prompt_embeddings (N, D) = the encoder's output; keeps the ReLU outputs for the backward.
// lstm_dropout: the LSTM's dropout between layers in a training forward (p_tuning_lstm.hpp); the MLP
// encoder has none (PEFT's neither).
void record_prompt_encoder_forward(Recorder& recorder, const BufferSet& buffers, uint32_t virtual_tokens,
                                   uint32_t hidden, uint32_t encoder_hidden, float lstm_dropout = 0);
// From prompt_encoder.grad_output (N, D): every parameter's gradient, ADDED to grad.* (micro-batches
// accumulate). Needs the forward's buffers of the same parameters (and its lstm_dropout).
void record_prompt_encoder_backward(Recorder& recorder, const BufferSet& buffers, uint32_t virtual_tokens,
                                    uint32_t hidden, uint32_t encoder_hidden, float lstm_dropout = 0);

}  // namespace vkt::model
