#pragma once
// Counter-based random numbers and dropout.
//
// Random numbers are a stateless function of (seed, stream, step, layer, element index): no
// generator state is stored or advanced, so a recorded command buffer replays with new numbers
// when the step changes (it is read from StepState), a recomputed forward (gradient
// checkpointing) reproduces the same dropout mask, and any device gets the same bits.
//
// The function is Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11; checked against the Random123 known-answer vectors). It uses only 32-bit integer
// multiplies, xors and adds, which every Vulkan device computes exactly; shaders/random.glsl is
// the same code in GLSL and the tests compare the two bit for bit.
//
//   counter = (index / 4, step, layer, 0), key = (seed, stream)
//   bits    = philox4x32_10(counter, key)[index % 4]
//   uniform = (bits >> 8) * 2^-24           in [0, 1), exact in fp32 (24 bits)
// One Philox call gives the numbers of 4 consecutive elements; shaders use all four.
#include <array>
#include <cstdint>

#include "engine/kernels/dispatch.hpp"
#include "engine/kernels/types.hpp"

namespace vkt::random {

// Streams keep different uses of the same (seed, step, layer) independent.
enum Stream : uint32_t {
  stream_dropout = 1,
  stream_init = 2,  // adapter initialization (random_uniform)
  stream_dare = 3,  // merge: DARE drop masks (engine/kernels/merge.hpp)
};

using Philox4 = std::array<uint32_t, 4>;

inline Philox4 philox4x32_10(Philox4 counter, std::array<uint32_t, 2> key) {
  constexpr uint32_t multiplier0 = 0xD2511F53u, multiplier1 = 0xCD9E8D57u;
  constexpr uint32_t weyl0 = 0x9E3779B9u, weyl1 = 0xBB67AE85u;  // golden ratio, sqrt(3) - 1
  for (int round = 0; round < 10; round++) {
    uint64_t product0 = static_cast<uint64_t>(multiplier0) * counter[0];
    uint64_t product1 = static_cast<uint64_t>(multiplier1) * counter[2];
    uint32_t high0 = static_cast<uint32_t>(product0 >> 32), low0 = static_cast<uint32_t>(product0);
    uint32_t high1 = static_cast<uint32_t>(product1 >> 32), low1 = static_cast<uint32_t>(product1);
    counter = {high1 ^ counter[1] ^ key[0], low1, high0 ^ counter[3] ^ key[1], low0};
    key[0] += weyl0;
    key[1] += weyl1;
  }
  return counter;
}

// 24 random bits as a float in [0, 1): exactly representable, so every device rounds alike.
inline float uniform_from_bits(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

// The four random words of elements 4*group .. 4*group+3.
inline Philox4 random_bits4(uint32_t seed, uint32_t stream, uint32_t step, uint32_t layer, uint32_t group) {
  return philox4x32_10({group, step, layer, 0u}, {seed, stream});
}

inline float random_uniform(uint32_t seed, uint32_t stream, uint32_t step, uint32_t layer, uint64_t index) {
  return uniform_from_bits(random_bits4(seed, stream, step, layer, static_cast<uint32_t>(index >> 2))[index & 3]);
}

// Dropout keeps an element when its uniform is >= p.
inline bool dropout_keep(uint32_t seed, uint32_t step, uint32_t layer, uint64_t index, float p) {
  return random_uniform(seed, stream_dropout, step, layer, index) >= p;
}

}  // namespace vkt::random

namespace vkt::kernels {

// out[i] = low + (high - low) * uniform(seed, stream, step, layer, i). out: (n) fp32.
// For setup work such as adapter initialization: the key comes from the arguments (push
// constants), not from StepState, because it is not replayed per step.
void random_uniform(Recorder& recorder, const BufferRange& out, uint64_t n, uint32_t seed, uint32_t stream,
                    uint32_t step, uint32_t layer, float low = 0.0f, float high = 1.0f);

// Inverted dropout: y[i] = keep(i) ? x[i] * (1 / (1 - p)) : 0 with keep(i) = uniform >= p, the
// uniform keyed by (StepState.rng_seed, stream_dropout, StepState.rng_step, layer, i).
// x, y: (n) of `type` (f16 needs 16-bit storage; bf16 as uint16 bit patterns); y may be x.
// step_state: the StepState buffer (engine/kernels/optimizer.hpp). p = 0 copies; p >= 1 zeroes.
void dropout(Recorder& recorder, const BufferRange& x, const BufferRange& y, DType type, uint64_t n, float p,
             uint32_t layer, const BufferRange& step_state);

// Backward: dx = dy masked and scaled exactly as the forward did (the mask is recomputed from
// the same key, so nothing is saved). dy, dx: (n) of `type`; dx may be dy. Must run while
// StepState holds the forward's rng_seed and rng_step.
void dropout_backward(Recorder& recorder, const BufferRange& dy, const BufferRange& dx, DType type, uint64_t n, float p,
                      uint32_t layer, const BufferRange& step_state);

// The factor kept elements are multiplied by: 1/(1-p) rounded to fp32 once on the host (what
// both the shader and ref::dropout use), 0 when p >= 1.
float dropout_scale(float p);

}  // namespace vkt::kernels

namespace vkt::ref {
void random_uniform(float* out, uint64_t n, uint32_t seed, uint32_t stream, uint32_t step, uint32_t layer,
                    float low = 0.0f, float high = 1.0f);
// fp32 dropout (also the backward: pass dy as x). Bit-exact with the kernel for fp32 storage.
void dropout(const float* x, float* y, uint64_t n, float p, uint32_t layer, uint32_t seed, uint32_t step);
}  // namespace vkt::ref
