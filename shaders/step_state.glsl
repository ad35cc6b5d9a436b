// Per-step values of a recorded-once, replayed-every-step training step: the host rewrites them
// before each submission, kernels read them (and the norm kernel writes grad_norm and
// clip_coefficient). Mirrors struct StepState in engine/kernels/optimizer.hpp (std430, 64 bytes).
// Needs common.glsl (buffer references) first.
layout(buffer_reference, std430, buffer_reference_align = 16) buffer StepStateBuffer {
  uint step;              //  0 host: optimizer step, 1-based
  uint rng_seed;          //  4 host: Philox key word 0
  uint rng_step;          //  8 host: RNG counter word, changes every micro-step
  uint flags;             // 12 device: STEP_FLAG_* bits set by grad_norm_finish (the host writes 0)
  float learning_rate;    // 16 host
  float grad_scale;       // 20 host: multiplies raw gradients in the norm and the optimizers
  float grad_norm;        // 24 device: L2 norm of grad_scale * g
  float clip_coefficient; // 28 device: min(1, max_norm / (grad_norm + 1e-6)), 1 without clipping
  float adam_step_size;   // 32 host: lr / (1 - beta1^step)
  float adam_bias_correction2_sqrt;  // 36 host: sqrt(1 - beta2^step)
  float spare[6];         // 40..63
};

// StepState.flags bits (kernels::step_flag_* on the host). The optimizers skip their update when
// any is set, so a non-finite step never reaches the weights.
const uint STEP_FLAG_NON_FINITE_GRADIENT = 1u;  // the global gradient norm is NaN or Inf
const uint STEP_FLAG_NON_FINITE_LOSS = 2u;      // the step's summed loss is NaN or Inf
const uint STEP_FLAG_NON_FINITE = 3u;
