#include "engine/merge/lowrank.hpp"

#include <lapacke.h>

#include <algorithm>
#include <cmath>

#include "engine/base/error.hpp"
#include "engine/kernels/matmul.hpp"
#include "engine/kernels/random.hpp"
#include "engine/vk/recorder.hpp"

namespace vkt::merge {

void orthonormalize_columns(std::vector<double>& m, uint32_t rows, uint32_t cols) {
  VKT_ASSERT(rows >= cols && m.size() == uint64_t(rows) * cols, "orthonormalize_columns: rows >= cols");
  if (cols == 0) return;
  std::vector<double> tau(cols);
  lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, rows, cols, m.data(), cols, tau.data());
  VKT_ASSERT(info == 0, "dgeqrf failed: " + std::to_string(info));
  info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, rows, cols, cols, m.data(), cols, tau.data());
  VKT_ASSERT(info == 0, "dorgqr failed: " + std::to_string(info));
}

ThinSvd thin_svd(std::vector<double> m, uint32_t rows, uint32_t cols) {
  VKT_ASSERT(m.size() == uint64_t(rows) * cols, "thin_svd: size");
  ThinSvd svd;
  svd.k = std::min(rows, cols);
  svd.u.assign(uint64_t(rows) * svd.k, 0.0);
  svd.s.assign(svd.k, 0.0);
  svd.vt.assign(uint64_t(svd.k) * cols, 0.0);
  if (svd.k == 0) return svd;
  lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', rows, cols, m.data(), cols, svd.s.data(), svd.u.data(), svd.k,
                                   svd.vt.data(), cols);
  VKT_ASSERT(info == 0, "dgesdd did not converge: " + std::to_string(info));
  return svd;
}

namespace {

// B = U_r √Σ_r, A = √Σ_r V_rᵀ from u (rows × k), s, vt (k × cols); columns past the available
// singular values stay zero.
void split_factors(LowRank& result, const std::vector<double>& u, uint32_t u_cols, const std::vector<double>& s,
                   const std::vector<double>& vt) {
  const uint32_t available = std::min<uint32_t>(result.rank, static_cast<uint32_t>(s.size()));
  result.b.assign(uint64_t(result.rows) * result.rank, 0.0f);
  result.a.assign(uint64_t(result.rank) * result.cols, 0.0f);
  for (uint32_t j = 0; j < available; j++) {
    double root = std::sqrt(std::max(0.0, s[j]));
    for (uint32_t i = 0; i < result.rows; i++)
      result.b[uint64_t(i) * result.rank + j] = static_cast<float>(u[uint64_t(i) * u_cols + j] * root);
    for (uint32_t c = 0; c < result.cols; c++)
      result.a[uint64_t(j) * result.cols + c] = static_cast<float>(vt[uint64_t(j) * result.cols + c] * root);
  }
  result.singular = s;
}

double squares(const std::vector<double>& values, size_t from) {
  double sum = 0;
  for (size_t i = from; i < values.size(); i++) sum += values[i] * values[i];
  return sum;
}

}  // namespace

LowRank truncate_factored(const std::vector<double>& b_cat, const std::vector<double>& a_cat, uint32_t rows,
                          uint32_t cols, uint32_t inner, uint32_t rank) {
  VKT_ASSERT(b_cat.size() == uint64_t(rows) * inner && a_cat.size() == uint64_t(inner) * cols,
             "truncate_factored: sizes");
  LowRank result;
  result.rows = rows;
  result.cols = cols;
  result.rank = rank;
  if (inner >= std::min(rows, cols)) {
    // No saving in the factored route: form ΔW (small here) and take its SVD.
    std::vector<double> dense(uint64_t(rows) * cols, 0.0);
    for (uint32_t i = 0; i < rows; i++)
      for (uint32_t k = 0; k < inner; k++) {
        double b = b_cat[uint64_t(i) * inner + k];
        if (b == 0) continue;
        for (uint32_t c = 0; c < cols; c++) dense[uint64_t(i) * cols + c] += b * a_cat[uint64_t(k) * cols + c];
      }
    ThinSvd svd = thin_svd(std::move(dense), rows, cols);
    split_factors(result, svd.u, svd.k, svd.s, svd.vt);
  } else {
    // ΔW = Q_b R_b (Q_a R_a)ᵀ = Q_b (R_b R_aᵀ) Q_aᵀ; SVD of the inner × inner core.
    std::vector<double> qb = b_cat, qa(uint64_t(cols) * inner);
    for (uint32_t k = 0; k < inner; k++)
      for (uint32_t c = 0; c < cols; c++) qa[uint64_t(c) * inner + k] = a_cat[uint64_t(k) * cols + c];  // A_catᵀ
    std::vector<double> rb(uint64_t(inner) * inner), ra(uint64_t(inner) * inner);
    auto factor = [&](std::vector<double>& q, uint32_t q_rows, std::vector<double>& r) {
      std::vector<double> tau(inner);
      lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, q_rows, inner, q.data(), inner, tau.data());
      VKT_ASSERT(info == 0, "dgeqrf failed");
      for (uint32_t i = 0; i < inner; i++)
        for (uint32_t j = 0; j < inner; j++) r[uint64_t(i) * inner + j] = j >= i ? q[uint64_t(i) * inner + j] : 0.0;
      info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, q_rows, inner, inner, q.data(), inner, tau.data());
      VKT_ASSERT(info == 0, "dorgqr failed");
    };
    factor(qb, rows, rb);
    factor(qa, cols, ra);
    std::vector<double> core(uint64_t(inner) * inner, 0.0);  // R_b · R_aᵀ
    for (uint32_t i = 0; i < inner; i++)
      for (uint32_t j = 0; j < inner; j++) {
        double sum = 0;
        for (uint32_t k = 0; k < inner; k++) sum += rb[uint64_t(i) * inner + k] * ra[uint64_t(j) * inner + k];
        core[uint64_t(i) * inner + j] = sum;
      }
    ThinSvd svd = thin_svd(std::move(core), inner, inner);
    // Left vectors Q_b U (rows × inner), right vectors (Q_a V)ᵀ = Vᵀ Q_aᵀ (inner × cols).
    std::vector<double> u(uint64_t(rows) * inner, 0.0), vt(uint64_t(inner) * cols, 0.0);
    for (uint32_t i = 0; i < rows; i++)
      for (uint32_t k = 0; k < inner; k++) {
        double q = qb[uint64_t(i) * inner + k];
        for (uint32_t j = 0; j < inner; j++) u[uint64_t(i) * inner + j] += q * svd.u[uint64_t(k) * inner + j];
      }
    for (uint32_t j = 0; j < inner; j++)
      for (uint32_t k = 0; k < inner; k++) {
        double v = svd.vt[uint64_t(j) * inner + k];
        for (uint32_t c = 0; c < cols; c++) vt[uint64_t(j) * cols + c] += v * qa[uint64_t(c) * inner + k];
      }
    split_factors(result, u, inner, svd.s, vt);
  }
  result.frobenius = std::sqrt(squares(result.singular, 0));
  result.residual = std::sqrt(squares(result.singular, std::min<size_t>(rank, result.singular.size())));
  return result;
}

LowRank truncate_dense(vk::Context& context, const vk::BufferRange& delta, uint32_t rows, uint32_t cols, uint32_t rank,
                       double frobenius_squared, uint32_t seed, uint32_t power_iterations) {
  LowRank result;
  result.rows = rows;
  result.cols = cols;
  result.rank = rank;
  const uint32_t k = std::min(rank + 8, std::min(rows, cols));
  vk::Buffer y_buffer = context.allocate(uint64_t(rows) * k * 4, vk::Category::workspace, "lowrank.y");
  vk::Buffer z_buffer = context.allocate(uint64_t(cols) * k * 4, vk::Category::workspace, "lowrank.z");
  auto to_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  // Y = ΔW · Z: matmul_nn with A = ΔW (rows × cols), W = Z (cols × k).
  auto times = [&](const std::vector<double>& z) {
    std::vector<float> zf = to_float(z);
    context.upload(z_buffer, zf.data(), 0, zf.size() * 4);
    context.run([&](vk::Recorder& r) {
      kernels::matmul_nn(r, delta, kernels::DType::f32, kernels::dense_f32(z_buffer.range()), y_buffer.range(),
                         kernels::DType::f32, rows, cols, k);
    });
    std::vector<float> y(uint64_t(rows) * k);
    context.download(y_buffer, y.data(), 0, y.size() * 4);
    return to_double(y);
  };
  // Z = ΔWᵀ · Q: matmul_tn with A = ΔW (rows × cols), B = Q (rows × k).
  auto times_transposed = [&](const std::vector<double>& q) {
    std::vector<float> qf = to_float(q);
    context.upload(y_buffer, qf.data(), 0, qf.size() * 4);
    context.run([&](vk::Recorder& r) {
      kernels::matmul_tn(r, delta, kernels::DType::f32, y_buffer.range(), kernels::DType::f32, z_buffer.range(), rows,
                         cols, k);
    });
    std::vector<float> z(uint64_t(cols) * k);
    context.download(z_buffer, z.data(), 0, z.size() * 4);
    return to_double(z);
  };
  std::vector<float> omega(uint64_t(cols) * k);
  ref::random_uniform(omega.data(), omega.size(), seed, random::stream_init, 0, 0x5356u /* "SV" */, -1.0f, 1.0f);
  std::vector<double> q = times(to_double(omega));
  orthonormalize_columns(q, rows, k);
  for (uint32_t iteration = 0; iteration < power_iterations; iteration++) {
    std::vector<double> z = times_transposed(q);
    orthonormalize_columns(z, cols, k);
    q = times(z);
    orthonormalize_columns(q, rows, k);
  }
  std::vector<double> z = times_transposed(q);        // (cols × k) = (Qᵀ ΔW)ᵀ
  std::vector<double> projected(uint64_t(k) * cols);  // Qᵀ ΔW (k × cols)
  for (uint32_t c = 0; c < cols; c++)
    for (uint32_t j = 0; j < k; j++) projected[uint64_t(j) * cols + c] = z[uint64_t(c) * k + j];
  ThinSvd svd = thin_svd(std::move(projected), k, cols);
  std::vector<double> u(uint64_t(rows) * svd.k, 0.0);  // Q · U_small
  for (uint32_t i = 0; i < rows; i++)
    for (uint32_t m = 0; m < k; m++) {
      double value = q[uint64_t(i) * k + m];
      for (uint32_t j = 0; j < svd.k; j++) u[uint64_t(i) * svd.k + j] += value * svd.u[uint64_t(m) * svd.k + j];
    }
  split_factors(result, u, svd.k, svd.s, svd.vt);
  result.frobenius = std::sqrt(frobenius_squared);
  double kept = 0;
  for (uint32_t j = 0; j < std::min<uint32_t>(rank, svd.k); j++) kept += svd.s[j] * svd.s[j];
  result.residual = std::sqrt(std::max(0.0, frobenius_squared - kept));
  return result;
}

}  // namespace vkt::merge
