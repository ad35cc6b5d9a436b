#include "engine/plan/prefix_encoder_plan.hpp"

#include <algorithm>

#include "engine/kernels/reduce.hpp"

namespace vkt::plan {

std::vector<PromptEncoderTensor> prefix_encoder_parameters(uint64_t p, uint64_t t, uint64_t h, uint64_t layers) {
  const uint64_t width = layers * 2 * t;
  return {{"prefix_encoder.embedding.weight", {p, t}},
          {"prefix_encoder.transform.0.weight", {h, t}},
          {"prefix_encoder.transform.0.bias", {h}},
          {"prefix_encoder.transform.2.weight", {width, h}},
          {"prefix_encoder.transform.2.bias", {width}}};
}

bool trains_prefix_encoder(const spec::RunSettings& s) {
  return s.peft_type == spec::PeftType::prefix_tuning && s.training && s.prefix_projection_hidden > 0;
}

std::vector<std::pair<std::string, uint64_t>> prefix_encoder_workspace(uint64_t p, uint64_t t, uint64_t h,
                                                                       uint64_t layers) {
  const uint64_t width = layers * 2 * t;
  const uint64_t reduce = std::max(kernels::sum_rows_workspace_bytes(uint32_t(p), uint32_t(h)),
                                   kernels::sum_rows_workspace_bytes(uint32_t(p), uint32_t(width)));
  return {{"prefix_encoder.hidden", p * h * 4},
          {"prefix_encoder.grad_hidden", p * h * 4},
          {"prefix_encoder.grad_output", p * width * 4},
          {"prefix_encoder.reduce", reduce}};
}

}  // namespace vkt::plan
