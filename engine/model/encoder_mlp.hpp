#pragma once
// The small MLPs of PEFT's prompt-learning encoders, run and trained on the device: P-tuning's
// prompt encoder (p_tuning.hpp: Linear-ReLU-Linear-ReLU-Linear) and prefix tuning's prefix encoder
// (prefix_tuning.hpp, prefix_projection: Linear-Tanh-Linear). Each layer is a torch.nn.Linear
// (weight (out, in), bias (out)) followed by an activation in place, whose output the backward reads.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/buffers.hpp"
#include "engine/model/linear.hpp"

namespace vkt::model {

enum class EncoderActivation { none, relu, tanh };

struct EncoderLinear {
  std::string weight, bias;   // (out, in), (out) fp32 buffers; trained: their gradients are grad.<name>
  std::string input, output;  // (n, in), (n, out) fp32: output = activation(input · weightᵀ + bias)
  std::string grad_output;    // (n, out) fp32: d loss / d output (the layer after the activation)
  uint32_t in = 0, out = 0;
  EncoderActivation activation = EncoderActivation::none;
};

// PEFT's (torch.nn.Linear's) initialisation, keyed by `seed`: each weight and bias U(-1/sqrt(in),
// 1/sqrt(in)) (kaiming_uniform_(a=sqrt(5)) and the bias init), random streams first_key, first_key + 1, ...
void init_encoder_mlp(vk::Context& context, BufferSet& buffers, const std::vector<EncoderLinear>& layers, uint64_t seed,
                      uint32_t first_key);
// Every layer's output, first to last, for `n` rows.
void record_encoder_mlp_forward(Recorder& recorder, const BufferSet& buffers, const std::vector<EncoderLinear>& layers,
                                uint32_t n);
// From the last layer's grad_output (n, out): each layer's grad.<weight> and grad.<bias> ADDED to
// (micro-batches accumulate); d loss / d output of the layers before it overwritten in their
// grad_output; the first layer's input gradient ADDED to grad.<input> (the trained embedding).
// `reduce`: sum_rows workspace for n rows of the widest layer.
void record_encoder_mlp_backward(Recorder& recorder, const BufferSet& buffers, const std::vector<EncoderLinear>& layers,
                                 uint32_t n, const BufferRange& reduce);

}  // namespace vkt::model
