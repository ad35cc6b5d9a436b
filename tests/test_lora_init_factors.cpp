// pissa_init / olora_init (engine/model/lora_init.hpp) on tiny weights with a known answer, tall and
// wide: exact pissa keeps the top-r singular triplets (W built as Q1 diag(S) Q2ᵀ with distinct S, so
// s·B·A must be its rank-r truncation: sign-free, 1e-5 relative, fp32 factors), OLoRA's partial QR gives
// the full Householder QR's Q[:, :r], R[:r] (LAPACK's dgeqrf + dorgqr of the whole W, 1e-5 relative).
#include <doctest/doctest.h>
#include <lapacke.h>

#include <cmath>
#include <random>

#include "engine/model/lora_init.hpp"
#include "tests/golden_run.hpp"

using namespace vkt;

namespace {

// (rows, cols) row-major with orthonormal columns: Q of a Gaussian matrix's QR.
std::vector<double> orthonormal(int rows, int cols, unsigned seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<double> normal;
  std::vector<double> q(size_t(rows) * cols), tau(cols);
  for (double& value : q) value = normal(generator);
  REQUIRE(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, rows, cols, q.data(), cols, tau.data()) == 0);
  REQUIRE(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, rows, cols, cols, q.data(), cols, tau.data()) == 0);
  return q;
}

// Σ_k<count left[:, k] s_k right[:, k]ᵀ (out, in) as fp32.
std::vector<float> low_rank(const std::vector<double>& left, const std::vector<double>& right,
                            const std::vector<double>& s, int out, int in, int count) {
  const int k_all = static_cast<int>(s.size());
  std::vector<float> w(size_t(out) * in);
  for (int i = 0; i < out; i++)
    for (int j = 0; j < in; j++) {
      double sum = 0;
      for (int k = 0; k < count; k++) sum += left[size_t(i) * k_all + k] * s[k] * right[size_t(j) * k_all + k];
      w[size_t(i) * in + j] = static_cast<float>(sum);
    }
  return w;
}

}  // namespace

TEST_SUITE("model_hf") {

TEST_CASE("lora init: exact pissa keeps the top-r singular triplets; olora's Q_r, R_r are the full QR's (tall, wide)") {
  const int rank = 5;
  const float scale = 2.0f;
  for (const auto& [out, in] : {std::pair{24, 40}, std::pair{40, 24}}) {
    const int out_rows = out, in_cols = in;
    CAPTURE(out_rows);
    CAPTURE(in_cols);
    const int k_all = std::min(out, in);
    std::vector<double> s(k_all);
    for (int k = 0; k < k_all; k++) s[k] = 4.0 * std::pow(0.8, k);  // distinct: each triplet is defined
    const std::vector<double> left = orthonormal(out, k_all, 1), right = orthonormal(in, k_all, 2);
    const std::vector<float> weight = low_rank(left, right, s, out, in, k_all);
    const std::vector<float> truncation = low_rank(left, right, s, out, in, rank);

    std::vector<float> residual = weight;
    const model::LoraPair pissa = model::pissa_init(residual, out, in, rank, scale);
    std::vector<float> product(weight.size()), expected_residual(weight.size());
    for (int i = 0; i < out; i++)
      for (int j = 0; j < in; j++) {
        double sum = 0;
        for (int k = 0; k < rank; k++) sum += double(pissa.b[size_t(i) * rank + k]) * pissa.a[size_t(k) * in + j];
        product[size_t(i) * in + j] = static_cast<float>(scale * sum);
        expected_residual[size_t(i) * in + j] = weight[size_t(i) * in + j] - truncation[size_t(i) * in + j];
      }
    CHECK(test::relative_error(product, truncation) < 1e-5);
    CHECK(test::relative_error(residual, expected_residual) < 1e-5);
    for (int k = 0; k < rank; k++) {  // A's row k is √(s_k/scale)·v_kᵀ
      double norm = 0;
      for (int j = 0; j < in; j++) norm += double(pissa.a[size_t(k) * in + j]) * pissa.a[size_t(k) * in + j];
      CHECK(std::sqrt(norm) == doctest::Approx(std::sqrt(s[k] / scale)).epsilon(1e-6));
    }

    std::vector<double> full(weight.begin(), weight.end()), tau(k_all);
    REQUIRE(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, out, in, full.data(), in, tau.data()) == 0);
    std::vector<float> r_expected(size_t(rank) * in, 0.0f), q_expected(size_t(out) * rank);
    for (int i = 0; i < rank; i++)
      for (int j = i; j < in; j++) r_expected[size_t(i) * in + j] = static_cast<float>(full[size_t(i) * in + j]);
    std::vector<double> q(size_t(out) * k_all);
    for (int i = 0; i < out; i++)
      for (int j = 0; j < k_all; j++) q[size_t(i) * k_all + j] = full[size_t(i) * in + j];
    REQUIRE(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, out, k_all, k_all, q.data(), k_all, tau.data()) == 0);
    for (int i = 0; i < out; i++)
      for (int k = 0; k < rank; k++) q_expected[size_t(i) * rank + k] = static_cast<float>(q[size_t(i) * k_all + k]);
    std::vector<float> olora_residual = weight;
    const model::LoraPair olora = model::olora_init(olora_residual, out, in, rank, scale);
    CHECK(test::relative_error(olora.a, r_expected) < 1e-5);
    CHECK(test::relative_error(olora.b, q_expected) < 1e-5);
    for (int i = 1; i < rank; i++)
      for (int j = 0; j < i; j++) CHECK(olora.a[size_t(i) * in + j] == 0.0f);  // R's triangle, as torch's
  }
}

}  // TEST_SUITE
