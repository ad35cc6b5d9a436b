#pragma once
// Low-rank factorizations for adapter-space merges: a merged update ΔW (out × in) written back as
// a LoRA pair B (out × r) · A (r × in) by a truncated SVD (the best rank-r approximation in the
// Frobenius norm, Eckart–Young). Dense linear algebra on small matrices goes through LAPACKE
// (Householder QR: dgeqrf + dorgqr; SVD: dgesdd) in double precision.
//
// Two cases:
// - ΔW given as factors, ΔW = B_cat · A_cat with B_cat (out × R), A_cat (R × in), R the sum of
//   the merged ranks (linear and task-arithmetic merges of adapters): QR of B_cat and of A_catᵀ,
//   then the SVD of the R × R core R_B R_Aᵀ. Exact; no out × in matrix is formed.
// - ΔW dense on the device (TIES/DARE of adapters: element-wise, so full rank): the randomized
//   range finder with power iterations (Halko, Martinsson & Tropp 2011, "Finding structure with
//   randomness", Algorithm 4.4) with k = r + 8 columns: Y = ΔW Ω, then q times Q = qr(Y),
//   Z = qr(ΔWᵀ Q), Y = ΔW Z; finally Q = qr(Y), Z = ΔWᵀ Q and the exact SVD of Zᵀ (k × in). The
//   products are matmuls on the device; the error is measured exactly (Pythagoras, since the
//   result is an orthogonal projection of ΔW): ‖ΔW − BA‖² = ‖ΔW‖² − Σ_{i<=r} σ_i².
// The factors are split symmetrically: B = U_r √Σ_r, A = √Σ_r V_rᵀ (a LoRA scale of 1).
#include <cstdint>
#include <vector>

#include "engine/vk/context.hpp"

namespace vkt::merge {

struct LowRank {
  uint32_t rows = 0, cols = 0, rank = 0;
  std::vector<float> b;          // (rows, rank) fp32
  std::vector<float> a;          // (rank, cols) fp32
  std::vector<double> singular;  // the singular values found, descending (at least `rank`)
  double frobenius = 0;          // ‖ΔW‖_F
  double residual = 0;           // ‖ΔW − B·A‖_F (exact)
  double relative_residual() const { return frobenius > 0 ? residual / frobenius : 0; }
};

// Orthonormal basis (rows × cols, row-major, in place) of the columns of m; rows >= cols.
void orthonormalize_columns(std::vector<double>& m, uint32_t rows, uint32_t cols);

struct ThinSvd {
  uint32_t k = 0;          // min(rows, cols)
  std::vector<double> u;   // (rows, k)
  std::vector<double> s;   // (k) descending
  std::vector<double> vt;  // (k, cols)
};
ThinSvd thin_svd(std::vector<double> m, uint32_t rows, uint32_t cols);

// ΔW = b_cat (rows × inner) · a_cat (inner × cols), both row-major double; truncated to `rank`
// (at most min(rows, cols, inner); zero singular values give zero columns).
LowRank truncate_factored(const std::vector<double>& b_cat, const std::vector<double>& a_cat, uint32_t rows,
                          uint32_t cols, uint32_t inner, uint32_t rank);

// delta: (rows, cols) fp32 on the device; `frobenius_squared` = ‖ΔW‖² (the caller has the values).
LowRank truncate_dense(vk::Context& context, const vk::BufferRange& delta, uint32_t rows, uint32_t cols, uint32_t rank,
                       double frobenius_squared, uint32_t seed, uint32_t power_iterations = 2);

}  // namespace vkt::merge
