#pragma once
// The buffers of P-tuning's prompt encoder (PEFT's PromptEncoder, MLP or LSTM reparameterization;
// engine/model/p_tuning.hpp, p_tuning_lstm.hpp) while it trains: its parameters (trained: each gets its grad.* and optimizer states)
// and its working buffers. The prompt (prompt_embeddings) is then the encoder's output, not trained.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/spec/run_settings.hpp"

namespace vkt::plan {

struct PromptEncoderTensor {
  std::string name;             // buffer name, PEFT's parameter name without the adapter's ("default")
  std::vector<uint64_t> shape;  // torch's: Linear weight (out, in), bias (out), embedding (N, D)
  uint64_t elements() const;
};
// Parameters in PEFT's named_parameters order, for N virtual tokens, token dim D, encoder hidden H:
// prompt_encoder.embedding.weight (N, D), prompt_encoder.mlp_head.0.weight (H, D), .0.bias (H),
// .2.weight (H, H), .2.bias (H), .4.weight (D, H), .4.bias (D).
// LSTM (lstm_layers L > 0): the embedding, then torch.nn.LSTM's per layer l and direction ("" and
// "_reverse"): prompt_encoder.lstm_head.weight_ih_l<l> (4H, l ? 2H : D), .weight_hh_l<l> (4H, H),
// .bias_ih_l<l> (4H), .bias_hh_l<l> (4H); then mlp_head.0.weight (2H, 2H), .0.bias (2H),
// .2.weight (D, 2H), .2.bias (D).
std::vector<PromptEncoderTensor> prompt_encoder_parameters(uint64_t virtual_tokens, uint64_t hidden,
                                                           uint64_t encoder_hidden, uint32_t lstm_layers = 0);
// True when the run trains an encoder: p_tuning, training, prompt_encoder_hidden > 0.
bool trains_prompt_encoder(const spec::RunSettings& settings);
// Working buffers (name, bytes), all fp32: prompt_encoder.hidden1/.hidden2 (N, H) the ReLU outputs,
// .grad_hidden1/.grad_hidden2 (N, H) their gradients, .grad_output (N, D) d loss / d prompt,
// .reduce the bias gradients' column-sum workspace.
// LSTM: per layer l and direction d ("" or "_reverse") prompt_encoder.lstm.gates.l<l><d> (N, 4H) the
// activated gates, .cells.l<l><d> (N, H), .h.l<l><d> (N, H); per layer .out.l<l> (N, 2H) both
// directions' h side by side (torch's output); .grad_gates (N, 4H), .grad_cell (H) the backward's
// through time, .grad_out_a (and .grad_out_b with L > 1) (N, 2H) a layer's output gradient; then
// the MLP head's hidden1, grad_hidden1 (N, 2H), grad_output (N, D) and reduce.
std::vector<std::pair<std::string, uint64_t>> prompt_encoder_workspace(uint64_t virtual_tokens, uint64_t hidden,
                                                                       uint64_t encoder_hidden,
                                                                       uint32_t lstm_layers = 0);

}  // namespace vkt::plan
