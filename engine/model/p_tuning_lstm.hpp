#pragma once
// PEFT's P-tuning with the LSTM reparameterization (PromptEncoder, encoder_reparameterization_type
// "LSTM", peft 0.21): the prompt is
//   prompt = mlp_head(lstm_head(E))   E (N, D) ~ N(0, 1)
//   lstm_head: torch.nn.LSTM(D, H, num_layers=L, bidirectional=True), over the N virtual tokens as
//              one sequence; layer l > 0 reads layer l-1's (N, 2H) output (forward h | reverse h)
//   mlp_head:  Linear(2H, 2H) - ReLU - Linear(2H, D)
// Each step is a matmul for x·W_ihᵀ + b_ih (all N rows at once), one for h_prev·W_hhᵀ and the
// lstm_cell kernel; the backward runs through time over the N tokens, both directions, every layer.
// Buffers: engine/plan/prompt_encoder_plan.hpp (lstm_layers > 0). PEFT's LSTM dropout between layers
// (encoder_dropout) is not built: training refuses it (engine/train/soft_prompt_run.cpp).
#include <cstdint>

#include "engine/model/buffers.hpp"
#include "engine/model/linear.hpp"

namespace vkt::model {

// The LSTM's layer count in `buffers` (0: the MLP encoder, or none).
uint32_t lstm_encoder_layers(const BufferSet& buffers);
// PEFT's initialisation, keyed by `seed` (streams from `key` on): the embedding N(0, 1), every
// LSTM weight and bias U(-1/sqrt(H), 1/sqrt(H)) (nn.LSTM.reset_parameters), the head's Linear
// weight and bias U(-1/sqrt(in), 1/sqrt(in)).
void init_lstm_prompt_encoder(vk::Context& context, BufferSet& buffers, uint32_t virtual_tokens, uint32_t hidden,
                              uint32_t encoder_hidden, uint64_t seed, uint32_t key);
// prompt_embeddings (N, D) = the encoder's output; keeps gates, cells, h and the head's ReLU output.
void record_lstm_encoder_forward(Recorder& recorder, const BufferSet& buffers, uint32_t virtual_tokens, uint32_t hidden,
                                 uint32_t encoder_hidden);
// From prompt_encoder.grad_output (N, D): every parameter's gradient ADDED to grad.* (backpropagation
// through time). Needs the forward's buffers.
void record_lstm_encoder_backward(Recorder& recorder, const BufferSet& buffers, uint32_t virtual_tokens,
                                  uint32_t hidden, uint32_t encoder_hidden);

}  // namespace vkt::model
