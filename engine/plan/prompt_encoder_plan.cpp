#include "engine/plan/prompt_encoder_plan.hpp"

#include <algorithm>
#include <string>

#include "engine/kernels/reduce.hpp"

namespace vkt::plan {

uint64_t PromptEncoderTensor::elements() const {
  uint64_t count = 1;
  for (uint64_t dim : shape) count *= dim;
  return count;
}

namespace {
const char* const directions[2] = {"", "_reverse"};  // torch.nn.LSTM's parameter suffixes

std::vector<PromptEncoderTensor> lstm_encoder_parameters(uint64_t n, uint64_t d, uint64_t h, uint32_t layers) {
  std::vector<PromptEncoderTensor> tensors = {{"prompt_encoder.embedding.weight", {n, d}}};
  for (uint32_t l = 0; l < layers; l++)
    for (const char* direction : directions) {
      const std::string suffix = "_l" + std::to_string(l) + direction;
      tensors.push_back({"prompt_encoder.lstm_head.weight_ih" + suffix, {4 * h, l ? 2 * h : d}});
      tensors.push_back({"prompt_encoder.lstm_head.weight_hh" + suffix, {4 * h, h}});
      tensors.push_back({"prompt_encoder.lstm_head.bias_ih" + suffix, {4 * h}});
      tensors.push_back({"prompt_encoder.lstm_head.bias_hh" + suffix, {4 * h}});
    }
  for (PromptEncoderTensor head : std::vector<PromptEncoderTensor>{{"prompt_encoder.mlp_head.0.weight", {2 * h, 2 * h}},
                                                                   {"prompt_encoder.mlp_head.0.bias", {2 * h}},
                                                                   {"prompt_encoder.mlp_head.2.weight", {d, 2 * h}},
                                                                   {"prompt_encoder.mlp_head.2.bias", {d}}})
    tensors.push_back(head);
  return tensors;
}
}  // namespace

std::vector<PromptEncoderTensor> prompt_encoder_parameters(uint64_t n, uint64_t d, uint64_t h, uint32_t lstm_layers) {
  if (lstm_layers > 0) return lstm_encoder_parameters(n, d, h, lstm_layers);
  return {{"prompt_encoder.embedding.weight", {n, d}}, {"prompt_encoder.mlp_head.0.weight", {h, d}},
          {"prompt_encoder.mlp_head.0.bias", {h}},     {"prompt_encoder.mlp_head.2.weight", {h, h}},
          {"prompt_encoder.mlp_head.2.bias", {h}},     {"prompt_encoder.mlp_head.4.weight", {d, h}},
          {"prompt_encoder.mlp_head.4.bias", {d}}};
}

bool trains_prompt_encoder(const spec::RunSettings& s) {
  return s.peft_type == spec::PeftType::p_tuning && s.training && s.prompt_encoder_hidden > 0;
}

std::vector<std::pair<std::string, uint64_t>> prompt_encoder_workspace(uint64_t n, uint64_t d, uint64_t h,
                                                                       uint32_t lstm_layers) {
  if (lstm_layers > 0) {
    std::vector<std::pair<std::string, uint64_t>> buffers;
    for (uint32_t l = 0; l < lstm_layers; l++) {
      for (const char* direction : directions) {
        const std::string suffix = ".l" + std::to_string(l) + direction;
        buffers.push_back({"prompt_encoder.lstm.gates" + suffix, n * 4 * h * 4});
        buffers.push_back({"prompt_encoder.lstm.cells" + suffix, n * h * 4});
        buffers.push_back({"prompt_encoder.lstm.h" + suffix, n * h * 4});
      }
      buffers.push_back({"prompt_encoder.lstm.out.l" + std::to_string(l), n * 2 * h * 4});
    }
    buffers.push_back({"prompt_encoder.lstm.grad_gates", n * 4 * h * 4});
    buffers.push_back({"prompt_encoder.lstm.grad_cell", h * 4});
    buffers.push_back({"prompt_encoder.lstm.grad_out_a", n * 2 * h * 4});
    if (lstm_layers > 1) buffers.push_back({"prompt_encoder.lstm.grad_out_b", n * 2 * h * 4});
    const uint64_t reduce = std::max({kernels::sum_rows_workspace_bytes(uint32_t(n), uint32_t(4 * h)),
                                      kernels::sum_rows_workspace_bytes(uint32_t(n), uint32_t(2 * h)),
                                      kernels::sum_rows_workspace_bytes(uint32_t(n), uint32_t(d))});
    for (auto buffer : std::vector<std::pair<std::string, uint64_t>>{{"prompt_encoder.hidden1", n * 2 * h * 4},
                                                                     {"prompt_encoder.grad_hidden1", n * 2 * h * 4},
                                                                     {"prompt_encoder.grad_output", n * d * 4},
                                                                     {"prompt_encoder.reduce", reduce}})
      buffers.push_back(buffer);
    return buffers;
  }
  const uint64_t reduce = std::max(kernels::sum_rows_workspace_bytes(uint32_t(n), uint32_t(h)),
                                   kernels::sum_rows_workspace_bytes(uint32_t(n), uint32_t(d)));
  return {{"prompt_encoder.hidden1", n * h * 4},      {"prompt_encoder.hidden2", n * h * 4},
          {"prompt_encoder.grad_hidden1", n * h * 4}, {"prompt_encoder.grad_hidden2", n * h * 4},
          {"prompt_encoder.grad_output", n * d * 4},  {"prompt_encoder.reduce", reduce}};
}

}  // namespace vkt::plan
