#pragma once
// Optimizer steps over many parameter tensors at once: global gradient norm and clipping,
// AdamW and SGD (torch.optim semantics), gradient zeroing and scaling.
//
// Record once, replay: the optimizer step is recorded into a command buffer once and submitted
// every step, so nothing that changes per step is a push constant. Per-step values live in a
// small device buffer, StepState, that the host rewrites before each submission and the shaders
// read (and the norm kernel writes).
//
// Multi-tensor: each operation is ONE dispatch over a TensorList, a device table of
// {param, grad, state addresses, element count} built once on the host. Workgroups map to
// (tensor, chunk of chunk_elements elements); a workgroup finds its tensor by binary search over
// the tensors' first chunk numbers, so hundreds of LoRA tensors cost one launch per operation.
//
// How a trainer drives it (one StepState buffer shared by every recorded sequence):
//   setup:  TensorList list(context, tensors);  vk::Buffer state = allocate_step_state(context);
//           record the micro-step sequence (forward with dropout, backward accumulating into the
//           gradients) and the optimizer sequence once:
//             grad_norm(list, state, max_norm)  -> StepState.grad_norm, .clip_coefficient
//             adamw(list, state, config)  or  sgd(...)  -> reads lr, step, bias corrections,
//                                                          grad_scale * clip_coefficient
//             zero_gradients(list)               -> ready for the next accumulation window
//   step t: for each micro-batch k: StepState.rng_step = a counter that never repeats (e.g.
//           (t-1) * accumulation + k); write_step_state; submit the micro-step sequence.
//           Then set_optimizer_step(state, t, lr_t[, adamw]) with grad_scale (e.g. 1 / the
//           window's loss weight); write_step_state; submit the optimizer sequence.
//   logging steps only: read_step_state(...).grad_norm once the submission has completed.
// write_step_state must not overwrite the buffer while a submission reading it is in flight
// (Context::submit waits; a pipelined trainer keeps one StepState buffer per frame in flight).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/kernels/dispatch.hpp"

namespace vkt::kernels {

// Per-step values, std430 layout; shaders/step_state.glsl declares the same block. 64 bytes.
// "host" fields are written by the host before each submission, "device" fields by kernels.
struct StepState {
  uint32_t step = 1;                     //  0 host: optimizer step, 1-based (AdamW bias correction; SGD
                                         //          momentum and AdamW moments start from zero at step 1)
  uint32_t rng_seed = 0;                 //  4 host: run seed (Philox key word 0)
  uint32_t rng_step = 0;                 //  8 host: RNG counter word; change it every micro-step (dropout masks)
  uint32_t flags = 0;                    // 12 device: step_flag_* bits set by grad_norm (the host writes 0)
  float learning_rate = 0;               // 16 host: lr of this step (the schedule is applied on the host)
  float grad_scale = 1;                  // 20 host: multiplies the raw gradients wherever the norm and the
                                         //          optimizers read them (e.g. 1 / accumulated loss weight)
  float grad_norm = 0;                   // 24 device: L2 norm of grad_scale * g over the whole list
  float clip_coefficient = 1;            // 28 device: min(1, max_norm / (grad_norm + 1e-6)); 1 without clipping
  float adam_step_size = 0;              // 32 host: lr / (1 - beta1^step), in double as torch does
  float adam_bias_correction2_sqrt = 1;  // 36 host: sqrt(1 - beta2^step)
  float spare[6] = {};                   // 40..63: free for the trainer (loss scale, ...)
};
static_assert(sizeof(StepState) == 64, "StepState must match shaders/step_state.glsl");
static_assert(offsetof(StepState, learning_rate) == 16 && offsetof(StepState, grad_norm) == 24 &&
                  offsetof(StepState, adam_step_size) == 32 && offsetof(StepState, spare) == 40,
              "StepState offsets must match shaders/step_state.glsl");

// StepState.flags bits (shaders/step_state.glsl: STEP_FLAG_*). grad_norm sets them; adamw and sgd
// then leave every weight and state untouched, so a NaN/Inf step never reaches the weights.
constexpr uint32_t step_flag_non_finite_gradient = 1;  // the global gradient norm is NaN or Inf
constexpr uint32_t step_flag_non_finite_loss = 2;      // the step's summed loss is NaN or Inf
constexpr uint32_t step_flag_non_finite = step_flag_non_finite_gradient | step_flag_non_finite_loss;
constexpr uint64_t step_state_flags_offset = offsetof(StepState, flags);  // for a 4-byte readback

// AdamW as torch.optim.AdamW: decoupled weight decay p *= 1 - lr*wd, then
// m = b1 m + (1-b1) g, v = b2 v + (1-b2) g², p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999;  // double: the host computes 1-beta and beta^step in double as torch
  float eps = 1e-8f;
  float weight_decay = 0.01f;  // torch's AdamW default
};

// SGD as torch.optim.SGD: g += wd * p; with momentum: buf = g at step 1, else
// buf = momentum * buf + (1 - dampening) * g; g = nesterov ? g + momentum * buf : buf; p -= lr * g.
struct SgdConfig {
  float momentum = 0;  // 0: plain SGD, no state
  float dampening = 0;
  bool nesterov = false;
  float weight_decay = 0;
};

// Host side of StepState.
// Sets step and learning_rate (and for AdamW the bias-correction terms, computed in double).
void set_optimizer_step(StepState& state, uint32_t step, double learning_rate);
void set_optimizer_step(StepState& state, uint32_t step, double learning_rate, const AdamWConfig& adamw);
// A device buffer for one StepState (category workspace), initialized to `initial`.
vk::Buffer allocate_step_state(vk::Context& context, const StepState& initial = {},
                               const std::string& name = "step_state");
// Whole-struct upload / readback (direct memcpy when the memory is host-visible). The caller
// makes sure no submission that reads the buffer is in flight.
void write_step_state(vk::Context& context, const vk::Buffer& buffer, const StepState& state);
StepState read_step_state(vk::Context& context, const vk::Buffer& buffer);

// One parameter tensor as the optimizer sees it. All ranges hold fp32 (count) elements.
struct OptimizerTensor {
  BufferRange param;   // (count) fp32, updated in place
  BufferRange grad;    // (count) fp32
  BufferRange state0;  // (count) fp32: AdamW exp_avg, SGD momentum buffer; empty when unused
  BufferRange state1;  // (count) fp32: AdamW exp_avg_sq; empty when unused
  uint32_t count = 0;
  float lr_scale = 1.0f;     // multiplies the learning rate (e.g. LoRA+ for B)
  float decay_scale = 1.0f;  // multiplies weight decay (0: no decay, e.g. norms and biases)
  bool states_8bit = false;  // state0/1 hold blockwise 8-bit codes + absmax (optimizer_8bit.hpp), not fp32
  bool param_bf16 = false;   // param holds (count) bf16 bits: adamw_bf16_sr's lists only (optimizer_bf16.hpp)
};

// The device table of a list of tensors plus the norm kernel's partial sums: built and uploaded
// once, then used by every step's dispatches (it allocates; the kernels below do not).
class TensorList {
 public:
  // Table entry, std430 (shaders/multi_tensor.glsl declares the same struct). 48 bytes.
  struct Entry {
    uint64_t param, grad, state0, state1;  // device addresses; 0 when a state is absent
    uint32_t count;                        // elements
    uint32_t first_chunk;                  // chunks of earlier tensors
    float lr_scale, decay_scale;
  };
  static_assert(sizeof(Entry) == 48, "TensorList::Entry must match shaders/multi_tensor.glsl");
  static constexpr uint32_t threads = 256;  // workgroup size of every multi-tensor kernel

  // chunk_elements: elements per workgroup, a multiple of `threads` (small values suit tests);
  // 0 picks default_chunk_elements(context.caps()).
  TensorList(vk::Context& context, std::vector<OptimizerTensor> tensors, uint32_t chunk_elements = 0,
             const std::string& name = "tensor_list");
  // 4096 (16 elements per thread) on GPUs; 16384 on CPU devices (lavapipe), which pay ~15-40 us
  // per workgroup: there the norm over 7.7M elements takes 56 ms instead of 132 ms.
  // VKT_CHUNK_ELEMENTS=N overrides it (a multiple of 256).
  static uint32_t default_chunk_elements(const vk::Capabilities& caps);

  // The table as the host built it (for tests and for `vktune plan`-style reports).
  const std::vector<Entry>& entries() const { return entries_; }
  const std::vector<OptimizerTensor>& tensors() const { return tensors_; }
  uint32_t tensor_count() const { return static_cast<uint32_t>(tensors_.size()); }
  uint32_t chunk_elements() const { return chunk_elements_; }
  uint32_t chunk_count() const { return chunk_count_; }  // workgroups per dispatch
  uint64_t element_count() const { return element_count_; }
  bool has_state0() const { return has_state0_; }  // every tensor has state0
  bool has_state1() const { return has_state1_; }
  BufferRange table() const { return table_.range(); }
  BufferRange partials() const { return partials_.range(); }  // (chunk_count) fp32 norm partial sums

  // Ranges for the recorder's hazard tracking: the tensors' ranges merged per VkBuffer into
  // covering spans (a superset, so barriers are never missed; hundreds of ranges would make
  // every hazard check slow to record).
  const std::vector<BufferRange>& param_spans() const { return param_spans_; }
  const std::vector<BufferRange>& grad_spans() const { return grad_spans_; }
  const std::vector<BufferRange>& state_spans() const { return state_spans_; }

  // Bytes the list allocates, for memory planning.
  static uint64_t table_bytes(uint32_t tensor_count);
  static uint64_t partials_bytes(uint32_t chunk_count);

 private:
  std::vector<OptimizerTensor> tensors_;
  std::vector<Entry> entries_;
  uint32_t chunk_elements_ = 0, chunk_count_ = 0;
  uint64_t element_count_ = 0;
  bool has_state0_ = true, has_state1_ = true;
  vk::Buffer table_, partials_;
  std::vector<BufferRange> param_spans_, grad_spans_, state_spans_;
};

// Global L2 norm of grad_scale * g over all tensors of the list (the scale applied to each element
// before squaring, as torch unscales before clip_grad_norm_: a loss-scaled gradient whose square
// would overflow fp32 keeps a finite norm); writes StepState.grad_norm and
// StepState.clip_coefficient = min(1, max_norm * (1 / (norm + 1e-6))) (torch's
// clip_grad_norm_, whose float / tensor is a reciprocal then a product), 1 when max_norm <= 0.
// Two dispatches: per-chunk fp32 partial sums (fixed-order tree in shared memory), then one
// workgroup adds the partials in a fixed order (Kahan-compensated fp32). Deterministic: the same
// inputs give the same bits on every run. A NaN/Inf gradient gives a NaN/Inf norm, as in torch,
// and sets step_flag_non_finite_gradient in StepState.flags; `loss` (optional, (1) fp32: the
// step's summed loss) is checked in the same pass (step_flag_non_finite_loss). The finite check
// of every step thus costs no pass of its own.
void grad_norm(Recorder& recorder, const TensorList& list, const BufferRange& step_state, float max_norm,
               const BufferRange* loss = nullptr);

// One AdamW step over every tensor (needs state0 = exp_avg, state1 = exp_avg_sq); nothing at all
// when StepState.flags has a step_flag_non_finite bit. The gradient used is
// g * grad_scale * clip_coefficient; at step 1 the moments start from zero whatever the
// state buffers hold. Reads step, learning_rate, adam_step_size, adam_bias_correction2_sqrt.
void adamw(Recorder& recorder, const TensorList& list, const BufferRange& step_state, const AdamWConfig& config);
// adamw's dispatch with another shader of the same push constants (adamw_8bit).
void record_adamw_shader(Recorder& recorder, const TensorList& list, const BufferRange& step_state,
                         const AdamWConfig& config, const char* shader);

// One SGD step (state0 = momentum buffer when momentum != 0). Reads step and learning_rate;
// nothing at all when StepState.flags has a step_flag_non_finite bit.
void sgd(Recorder& recorder, const TensorList& list, const BufferRange& step_state, const SgdConfig& config);

// g *= factor over all gradients of the list, for fixed factors. Per-step factors belong in
// StepState.grad_scale, which grad_norm and the optimizers apply without a pass of their own.
void scale_gradients(Recorder& recorder, const TensorList& list, float factor);

// Zeroes every gradient of the list (vkCmdFillBuffer; adjacent ranges merged into one fill).
void zero_gradients(Recorder& recorder, const TensorList& list);

}  // namespace vkt::kernels

namespace vkt::ref {
// CPU references: each element computed in double from the fp32 inputs, in torch's order,
// stored as fp32.
// L2 norm of fp32(scale * g) over all tensors concatenated, double accumulation.
double grad_norm(const std::vector<const float*>& grads, const std::vector<size_t>& counts, double scale = 1.0);
// torch.nn.utils.clip_grad_norm_'s coefficient, clamped to 1; 1 when max_norm <= 0.
float clip_coefficient(double norm, float max_norm);
// One step of one tensor. lr: already multiplied by the tensor's lr_scale; config.weight_decay:
// already multiplied by its decay_scale; grad_multiplier = grad_scale * clip_coefficient.
void adamw(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, size_t n, uint32_t step, double lr,
           const kernels::AdamWConfig& config, float grad_multiplier = 1.0f);
void sgd(float* param, const float* grad, float* momentum_buffer, size_t n, uint32_t step, double lr,
         const kernels::SgdConfig& config, float grad_multiplier = 1.0f);
}  // namespace vkt::ref
