#pragma once
// PEFT's P-tuning with the LSTM reparameterization (PromptEncoder, encoder_reparameterization_type
// "LSTM", peft 0.21): the prompt is
//   prompt = mlp_head(lstm_head(E))   E (N, D) ~ N(0, 1)
//   lstm_head: torch.nn.LSTM(D, H, num_layers=L, bidirectional=True), over the N virtual tokens as
//              one sequence; layer l > 0 reads layer l-1's (N, 2H) output (forward h | reverse h)
//   mlp_head:  Linear(2H, 2H) - ReLU - Linear(2H, D)
// Each step is a matmul for x·W_ihᵀ + b_ih (all N rows at once), one for h_prev·W_hhᵀ and the
// lstm_cell kernel; the backward runs through time over the N tokens, both directions, every layer.
// Buffers: engine/plan/prompt_encoder_plan.hpp (lstm_layers > 0).
// Dropout (encoder_dropout p, torch.nn.LSTM's `dropout`): in a training forward each layer's output but
// the last is dropped out (inverted: kept values times 1/(1-p)) before the next layer reads it. The
// mask is kernels::dropout's, keyed by StepState's rng_seed/rng_step (a fresh one per micro-batch, as
// PEFT runs the encoder on every forward) and lstm_dropout_key(l); it is applied in place on
// prompt_encoder.lstm.out.l<l> (the next layer's W_ih gradient reads the dropped values), and the
// backward masks that layer's output gradient the same way. No scratch is added.
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
// The dropout key (kernels::dropout's `layer`) of LSTM layer l's output: apart from LoRA's keys
// (layer * module_count + module).
constexpr uint32_t lstm_dropout_key(uint32_t layer) { return 0x7D000000u + layer; }
// prompt_embeddings (N, D) = the encoder's output; keeps gates, cells, h and the head's ReLU output.
// dropout > 0 (a training forward): between layers, keyed by buffers' step_state.
void record_lstm_encoder_forward(Recorder& recorder, const BufferSet& buffers, uint32_t virtual_tokens, uint32_t hidden,
                                 uint32_t encoder_hidden, float dropout = 0);
// From prompt_encoder.grad_output (N, D): every parameter's gradient ADDED to grad.* (backpropagation
// through time). Needs the forward's buffers, and its dropout with step_state unchanged.
void record_lstm_encoder_backward(Recorder& recorder, const BufferSet& buffers, uint32_t virtual_tokens,
                                  uint32_t hidden, uint32_t encoder_hidden, float dropout = 0);

}  // namespace vkt::model
