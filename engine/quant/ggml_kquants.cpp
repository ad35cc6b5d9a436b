#include "engine/quant/ggml_kquants.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/base/half.hpp"

namespace vkt::quant {
namespace {

constexpr int kSuperBlock = 256;        // QK_K
constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS

// ggml's nearest_int: round half to even through the float adder (|value| <= 2^22).
int nearest_int(float value) {
  const float shifted = value + 12582912.f;
  int bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

void store_half(uint8_t* bytes, float value) {
  const uint16_t bits = float_to_half(value);
  std::memcpy(bytes, &bits, 2);
}

// make_qkx2_quants: a scale and a (negated) min for n values with levels 0..nmax, searching
// nstep + 1 scales around the range's for the least weighted squared error.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* levels, float* the_min,
                       uint8_t* scratch, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) levels[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    levels[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * levels[i] + min - x[i];
    diff = diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      scratch[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * scratch[i] + this_min - x[i];
        diff = diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) levels[i] = scratch[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// make_qx_quants with rmse_type 1 and no importance weights (weights x²): a signed scale for n
// values with levels -nmax..nmax-1, trying 19 scales around -nmax/max.
float make_qx_quants(int n, int nmax, const float* x, int8_t* levels) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) levels[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    levels[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        levels[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

}  // namespace

void quantize_q4_k_block(const float* x, uint8_t* block) {
  // block: f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
  uint8_t* scales_bytes = block + 4;
  uint8_t* qs = block + 16;
  uint8_t levels[kSuperBlock], scratch[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;  // as the min is subtracted, scales are positive
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, levels + 32 * j, &mins[j], scratch, -1.f, 0.1f, 20);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(scales_bytes, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      scales_bytes[j] = ls;
      scales_bytes[j + 4] = lm;
    } else {
      scales_bytes[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      scales_bytes[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      scales_bytes[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  store_half(block, max_scale / 63.f);
  store_half(block + 2, max_min / 63.f);
  uint16_t d_bits, dmin_bits;
  std::memcpy(&d_bits, block, 2);
  std::memcpy(&dmin_bits, block + 2, 2);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    if (j < 4) {
      sc = scales_bytes[j] & 63;
      m = scales_bytes[j + 4] & 63;
    } else {
      sc = static_cast<uint8_t>((scales_bytes[j + 4] & 0xF) | ((scales_bytes[j - 4] >> 6) << 4));
      m = static_cast<uint8_t>((scales_bytes[j + 4] >> 4) | ((scales_bytes[j] >> 6) << 4));
    }
    const float d = half_to_float(d_bits) * sc;
    if (!d) continue;
    const float dm = half_to_float(dmin_bits) * m;
    for (int i = 0; i < 32; ++i) {
      const int l = nearest_int((x[32 * j + i] + dm) / d);
      levels[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
    }
  }
  for (int j = 0; j < kSuperBlock; j += 64) {
    for (int l = 0; l < 32; ++l) qs[l] = static_cast<uint8_t>(levels[j + l] | (levels[j + l + 32] << 4));
    qs += 32;
  }
}

void quantize_q6_k_block(const float* x, uint8_t* block) {
  // block: u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
  uint8_t* ql = block;
  uint8_t* qh = block + 128;
  int8_t* block_scales = reinterpret_cast<int8_t*>(block + 192);
  int8_t levels[kSuperBlock];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, levels + 16 * ib);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  std::memset(block, 0, 210);
  if (max_abs_scale < kGroupMaxEps) return;  // all zero: d = 0
  const float iscale = -128.f / max_scale;
  store_half(block + 208, 1 / iscale);
  uint16_t d_bits;
  std::memcpy(&d_bits, block + 208, 2);
  for (int ib = 0; ib < 16; ++ib)
    block_scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < 16; ++j) {
    const float d = half_to_float(d_bits) * block_scales[j];
    if (!d) continue;
    for (int i = 0; i < 16; ++i) {
      int l = nearest_int(x[16 * j + i] / d);
      l = std::max(-32, std::min(31, l));
      levels[16 * j + i] = static_cast<int8_t>(l + 32);
    }
  }
  for (int j = 0; j < kSuperBlock; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = levels[j + l + 0] & 0xF, q2 = levels[j + l + 32] & 0xF;
      const uint8_t q3 = levels[j + l + 64] & 0xF, q4 = levels[j + l + 96] & 0xF;
      ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((levels[j + l] >> 4) | ((levels[j + l + 32] >> 4) << 2) |
                                   ((levels[j + l + 64] >> 4) << 4) | ((levels[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

}  // namespace vkt::quant
