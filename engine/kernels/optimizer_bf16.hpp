#pragma once
// Optimizer steps for full finetuning with 16-bit weights (--method full --bf16 / --fp16):
//   with fp32 master weights (the standard): AdamW/SGD update the fp32 masters (an ordinary
//     TensorList whose params are the masters), then copy_masters writes each master's
//     round-to-nearest-even 16-bit copy into the weight the forward and backward read;
//   --pure-bf16: no master copy; adamw_bf16_sr updates bf16 parameters in place and rounds the fp32
//     result stochastically (bf16 has 8 bits of mantissa: a round-to-nearest update smaller than
//     half an ulp, 2^-9 of the weight, would vanish; rounding up with probability (dropped bits) /
//     2^16 keeps its expectation).
// Stochastic rounding's random bits: Philox4x32-10 (engine/kernels/random.hpp) with key
// (run seed, stream_rounding) and counter (element / 4, optimizer step, tensor index in the list,
// 0), the element's word's low 16 bits: reproducible for a seed and independent of the device's
// chunk size.
#include <cstddef>
#include <cstdint>

#include "engine/kernels/optimizer.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::kernels {

constexpr uint32_t stream_rounding = 4;  // random.hpp's streams: 1 dropout, 2 init, 3 DARE

// One AdamW step over every tensor of the list, whose params hold (count) bf16 bit patterns (the
// grads and states fp32, as adamw); the update rounds stochastically to bf16. Reads StepState's
// adamw fields plus rng_seed; nothing at all when a step_flag_non_finite bit is set.
void adamw_bf16_sr(Recorder& recorder, const TensorList& list, const BufferRange& step_state,
                   const AdamWConfig& config);

// A master weight and its 16-bit copy.
struct MasterCopy {
  BufferRange master;  // (count) fp32
  BufferRange weight;  // (count) bf16 or fp16 bits
  uint32_t count = 0;
};
// weight = round_to_nearest_even(master) for each pair (one convert dispatch each).
void copy_masters(Recorder& recorder, const std::vector<MasterCopy>& copies, DType weight_type);

}  // namespace vkt::kernels

namespace vkt::ref {
// x rounded to bf16 up or down: the 16 bits dropped from x's fp32 pattern plus `random` (16 bits
// used) carry into the kept ones. P(up) = dropped / 2^16, so E[result] = x to within fp32's
// rounding of x itself. NaN and Inf are not expected (the optimizer skips non-finite steps).
uint16_t stochastic_round_bf16(float x, uint32_t random);
// The random word of element `index` of tensor `tensor` at optimizer step `step`.
uint32_t rounding_bits(uint32_t seed, uint32_t step, uint32_t tensor, uint32_t index);
// ref::adamw on one tensor of bf16 parameters (its `tensor` index in the list), computed in
// double, rounded to fp32 as the kernel stores it, then stochastically to bf16.
void adamw_bf16_sr(uint16_t* param, const float* grad, float* exp_avg, float* exp_avg_sq, size_t n, uint32_t step,
                   double lr, const kernels::AdamWConfig& config, uint32_t seed, uint32_t tensor,
                   float grad_multiplier = 1.0f);
}  // namespace vkt::ref
