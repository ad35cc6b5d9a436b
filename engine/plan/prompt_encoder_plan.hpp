#pragma once
// The buffers of P-tuning's prompt encoder (PEFT's PromptEncoder, MLP reparameterization; engine/model/
// p_tuning.hpp) while it trains: its parameters (trained: each gets its grad.* and optimizer states)
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
std::vector<PromptEncoderTensor> prompt_encoder_parameters(uint64_t virtual_tokens, uint64_t hidden,
                                                           uint64_t encoder_hidden);
// True when the run trains an encoder: p_tuning, training, prompt_encoder_hidden > 0.
bool trains_prompt_encoder(const spec::RunSettings& settings);
// Working buffers (name, bytes), all fp32: prompt_encoder.hidden1/.hidden2 (N, H) the ReLU outputs,
// .grad_hidden1/.grad_hidden2 (N, H) their gradients, .grad_output (N, D) d loss / d prompt,
// .reduce the bias gradients' column-sum workspace.
std::vector<std::pair<std::string, uint64_t>> prompt_encoder_workspace(uint64_t virtual_tokens, uint64_t hidden,
                                                                       uint64_t encoder_hidden);

}  // namespace vkt::plan
