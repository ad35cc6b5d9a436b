#include "engine/train/loss_scaler.hpp"

#include <cmath>

#include "engine/kernels/optimizer.hpp"

namespace vkt::train {

LossScaler::LossScaler(bool enabled, LossScalerSettings settings)
    : enabled_(enabled), settings_(settings), scale_(enabled ? settings.init_scale : 1.0f) {}

float LossScaler::inverse_scale() const { return static_cast<float>(1.0 / static_cast<double>(scale_)); }

bool LossScaler::update(bool found_inf) {
  if (!enabled_) return false;
  // torch's _amp_update_scale_ (aten/src/ATen/native/cpu/AmpGradScalerKernels.cpp), in fp32.
  if (found_inf) {
    scale_ = scale_ * settings_.backoff_factor;
    growth_tracker_ = 0;
    skipped_steps_++;
    return true;
  }
  const int64_t successful = growth_tracker_ + 1;
  if (successful == settings_.growth_interval) {
    const float grown = scale_ * settings_.growth_factor;
    if (std::isfinite(grown)) scale_ = grown;
    growth_tracker_ = 0;
  } else {
    growth_tracker_ = successful;
  }
  return false;
}

void LossScaler::restore(const LossScalerState& state) {
  scale_ = state.scale;
  growth_tracker_ = state.growth_tracker;
  skipped_steps_ = state.skipped_steps;
}

uint32_t LossScaler::absorb(uint32_t flags) {
  if (!enabled_ || (flags & kernels::step_flag_non_finite_loss)) return flags;
  update(flags & kernels::step_flag_non_finite_gradient);
  return 0;
}

}  // namespace vkt::train
