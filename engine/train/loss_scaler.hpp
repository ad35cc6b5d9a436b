#pragma once
// Dynamic loss scaling for --fp16: torch.amp.GradScaler's rules (torch 2.15) and HF Trainer's
// handling of a skipped step.
#include <cstdint>

namespace vkt::train {

// The loss gradient carries scale(); the optimizer pass unscales (StepState.grad_scale =
// inverse_scale()) before the norm, clipping and update, as GradScaler.unscale_ before
// clip_grad_norm_. Scales are powers of two, so scaling is exact in fp32: a run with a scaler
// computes the same bits as one without, until an overflow.

// What a checkpoint keeps of a scaler (HF saves GradScaler's state_dict as scaler.pt).
struct LossScalerState {
  float scale = 1.0f;
  int64_t growth_tracker = 0;
  int64_t skipped_steps = 0;
};

struct LossScalerSettings {
  float init_scale = 65536.0f;  // 2^16
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  int64_t growth_interval = 2000;
};

// An Inf/NaN gradient (the norm pass's kernels::step_flag_non_finite_gradient; the optimizers then
// skip the step on the device) halves the scale and resets the count of consecutive finite steps;
// growth_interval finite steps double it, unless the fp32 scale would become Inf (torch keeps it).
// A skipped step counts as a global step, but neither the lr scheduler (HF Trainer steps it only
// `if not accelerator.optimizer_step_was_skipped`) nor AdamW's step count advances. Disabled (fp32,
// bf16) the scale is 1 and nothing is skipped: a non-finite step stops the run as before.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, LossScalerSettings settings = {});
  bool enabled() const { return enabled_; }
  // The factor on this step's loss gradient (1 when disabled).
  float scale() const { return scale_; }
  // 1 / scale in fp32, as torch's scale.double().reciprocal().float().
  float inverse_scale() const;
  // After a step whose gradient check found an Inf/NaN (`found_inf`) or not: adjusts the scale
  // and the growth tracker; returns true when the step was skipped (found_inf, enabled).
  bool update(bool found_inf);
  // The trainer's form: updates from a step's kernels::step_flag_* bits and returns the bits that
  // still stop the run. Enabled, an Inf/NaN gradient with a finite loss is an overflow: skipped
  // (0 returned); a non-finite loss is not one the scale can cure (the forward overflowed or the
  // data is bad, and torch would back off forever) and stops the run as in fp32.
  uint32_t absorb(uint32_t flags);
  int64_t growth_tracker() const { return growth_tracker_; }  // consecutive finite steps since the last change
  int64_t skipped_steps() const { return skipped_steps_; }    // steps skipped so far
  // For global step `step` (1-based, skipped steps included): the scheduler's and the optimizer's
  // own 1-based step, which skipped steps do not advance.
  int64_t schedule_step(int64_t step) const { return step - skipped_steps_; }
  int64_t optimizer_step(int64_t step) const { return step - skipped_steps_; }
  LossScalerState state() const { return {scale_, growth_tracker_, skipped_steps_}; }
  void restore(const LossScalerState& state);  // a resumed run continues where the checkpoint was

 private:
  bool enabled_;
  LossScalerSettings settings_;
  float scale_ = 1.0f;
  int64_t growth_tracker_ = 0;
  int64_t skipped_steps_ = 0;
};

}  // namespace vkt::train
