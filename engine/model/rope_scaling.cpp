// transformers' yarn and dynamic NTK RoPE initialisation (modeling_rope_utils.py,
// _compute_yarn_parameters / _compute_dynamic_ntk_parameters), one fp32 rounding per torch op:
// Python floats (double) are rounded to fp32 where they meet a tensor, and `1.0 / t` is
// t.reciprocal(). pow is correctly rounded here (torch's vectorised CPU pow is 1-ulp), so values
// agree with torch to a few ulp (tests/reference/rope_scaling_golden.py).
#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/base/error.hpp"
#include "engine/model/config.hpp"

namespace vkt::model {

namespace {
// Rounds through memory so that no product is fused into a following sum (fp-contract).
float fp32(double value) {
  volatile float stored = static_cast<float>(value);
  return stored;
}
float pow32(float base, float exponent) { return fp32(std::pow(static_cast<double>(base), double(exponent))); }

// base ** (torch.arange(0, dim, 2).float() / dim), (dim / 2) fp32.
std::vector<float> powers(int64_t dim, float base) {
  std::vector<float> result(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; i++) {
    const float exponent = fp32(static_cast<float>(2 * i) / static_cast<float>(dim));
    result[static_cast<size_t>(i)] = pow32(base, exponent);
  }
  return result;
}

double get_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }
}  // namespace

double yarn_attention_factor(const RopeScaling& scaling) {
  if (scaling.mscale.value_or(0) != 0 && scaling.mscale_all_dim.value_or(0) != 0)
    return get_mscale(scaling.factor, *scaling.mscale) / get_mscale(scaling.factor, *scaling.mscale_all_dim);
  return get_mscale(scaling.factor, 1.0);
}

std::vector<float> yarn_inv_freq(int64_t dim, double theta, const RopeScaling& scaling) {
  VKT_ASSERT(dim > 0 && dim % 2 == 0, "head_dim must be positive and even");
  const std::vector<float> pos_freqs = powers(dim, static_cast<float>(theta));
  const float factor = static_cast<float>(scaling.factor);
  // find_correction_range in Python doubles: the dimensions where beta_fast and beta_slow rotations
  // fit into the original context.
  const double original = static_cast<double>(scaling.original_max_position_embeddings);
  auto correction_dim = [&](double rotations) {
    return (static_cast<double>(dim) * std::log(original / (rotations * 2 * std::numbers::pi))) / (2 * std::log(theta));
  };
  double low = correction_dim(scaling.beta_fast), high = correction_dim(scaling.beta_slow);
  if (scaling.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // linear_ramp_factor: prevent a singular ramp
  const float low32 = static_cast<float>(low), span32 = static_cast<float>(high - low);
  std::vector<float> inv_freq(pos_freqs.size());
  for (size_t i = 0; i < inv_freq.size(); i++) {
    const float extrapolation = fp32(1.0f / pos_freqs[i]);
    const float interpolation = fp32(1.0f / fp32(factor * pos_freqs[i]));
    const float ramp = std::clamp(fp32(fp32(static_cast<float>(i) - low32) / span32), 0.0f, 1.0f);
    const float extrapolation_factor = fp32(1.0f - ramp);
    inv_freq[i] =
        fp32(fp32(interpolation * fp32(1.0f - extrapolation_factor)) + fp32(extrapolation * extrapolation_factor));
  }
  return inv_freq;
}

std::vector<float> dynamic_inv_freq(int64_t dim, double theta, double factor, int64_t max_position_embeddings,
                                    int64_t positions) {
  VKT_ASSERT(dim > 2 && dim % 2 == 0, "dynamic RoPE needs an even head_dim above 2");
  float base = static_cast<float>(theta);
  if (positions > max_position_embeddings) {
    // dynamic_frequency_update passes seq_len as a tensor, so the new base is fp32 tensor arithmetic:
    // base * ((factor * seq_len / max) - (factor - 1)) ** (dim / (dim - 2)).
    const float scaled = fp32(fp32(static_cast<float>(factor) * static_cast<float>(positions)) /
                              static_cast<float>(max_position_embeddings));
    const float shifted = fp32(scaled - static_cast<float>(factor - 1));
    const float exponent = static_cast<float>(static_cast<double>(dim) / static_cast<double>(dim - 2));
    base = fp32(base * pow32(shifted, exponent));
  }
  // Up to max_position_embeddings the base is unchanged: the default frequencies.
  std::vector<float> inv_freq = powers(dim, base);
  for (float& value : inv_freq) value = fp32(1.0f / value);
  return inv_freq;
}

}  // namespace vkt::model
