#pragma once
// The buffers of prefix tuning's prefix encoder (PEFT's PrefixEncoder with prefix_projection;
// engine/model/prefix_tuning.hpp) while it trains: its parameters (trained: each gets its grad.* and
// optimizer states) and its working buffers. The prefix (prefix.key_values) is then the encoder's
// output, not trained.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/plan/prompt_encoder_plan.hpp"
#include "engine/spec/run_settings.hpp"

namespace vkt::plan {

// Parameters in PEFT's named_parameters order, for P virtual tokens, token dim T (kv_heads * head_dim),
// encoder hidden H and L layers: prefix_encoder.embedding.weight (P, T), prefix_encoder.transform.0.weight
// (H, T), .0.bias (H), .2.weight (L*2*T, H), .2.bias (L*2*T).
std::vector<PromptEncoderTensor> prefix_encoder_parameters(uint64_t virtual_tokens, uint64_t token_dim,
                                                           uint64_t encoder_hidden, uint64_t layers);
// True when the run trains a prefix encoder: prefix_tuning, training, prefix_projection_hidden > 0.
bool trains_prefix_encoder(const spec::RunSettings& settings);
// Working buffers (name, bytes), all fp32: prefix_encoder.hidden (P, H) the tanh output,
// .grad_hidden (P, H) its gradient, .grad_output (P, L*2*T) d loss / d prefix, .reduce the bias
// gradients' column-sum workspace.
std::vector<std::pair<std::string, uint64_t>> prefix_encoder_workspace(uint64_t virtual_tokens, uint64_t token_dim,
                                                                       uint64_t encoder_hidden, uint64_t layers);

}  // namespace vkt::plan
