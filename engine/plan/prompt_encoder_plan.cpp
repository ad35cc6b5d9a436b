#include "engine/plan/prompt_encoder_plan.hpp"

#include <algorithm>

#include "engine/kernels/reduce.hpp"

namespace vkt::plan {

uint64_t PromptEncoderTensor::elements() const {
  uint64_t count = 1;
  for (uint64_t dim : shape) count *= dim;
  return count;
}

std::vector<PromptEncoderTensor> prompt_encoder_parameters(uint64_t n, uint64_t d, uint64_t h) {
  return {{"prompt_encoder.embedding.weight", {n, d}}, {"prompt_encoder.mlp_head.0.weight", {h, d}},
          {"prompt_encoder.mlp_head.0.bias", {h}},     {"prompt_encoder.mlp_head.2.weight", {h, h}},
          {"prompt_encoder.mlp_head.2.bias", {h}},     {"prompt_encoder.mlp_head.4.weight", {d, h}},
          {"prompt_encoder.mlp_head.4.bias", {d}}};
}

bool trains_prompt_encoder(const spec::RunSettings& s) {
  return s.peft_type == spec::PeftType::p_tuning && s.training && s.prompt_encoder_hidden > 0;
}

std::vector<std::pair<std::string, uint64_t>> prompt_encoder_workspace(uint64_t n, uint64_t d, uint64_t h) {
  const uint64_t reduce = std::max(kernels::sum_rows_workspace_bytes(uint32_t(n), uint32_t(h)),
                                   kernels::sum_rows_workspace_bytes(uint32_t(n), uint32_t(d)));
  return {{"prompt_encoder.hidden1", n * h * 4},      {"prompt_encoder.hidden2", n * h * 4},
          {"prompt_encoder.grad_hidden1", n * h * 4}, {"prompt_encoder.grad_hidden2", n * h * 4},
          {"prompt_encoder.grad_output", n * d * 4},  {"prompt_encoder.reduce", reduce}};
}

}  // namespace vkt::plan
