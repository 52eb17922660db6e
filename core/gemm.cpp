#include "core/gemm.h"

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <vector>

namespace longctx {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  using CMap = Eigen::Map<const Mat, 0, Stride>;
  Eigen::Map<Mat, 0, Stride> c(C, M, N, Stride(ldc));
  auto run = [&](const auto& a, const auto& b) {
    if (beta == T(0))
      c.noalias() = alpha * (a * b);
    else {
      if (beta != T(1)) c *= beta;
      c.noalias() += alpha * (a * b);
    }
  };
  const CMap a(A, trans_a ? K : M, trans_a ? M : K, Stride(lda));
  const CMap b(B, trans_b ? N : K, trans_b ? K : N, Stride(ldb));
  if (trans_a && trans_b) run(a.transpose(), b.transpose());
  else if (trans_a) run(a.transpose(), b);
  else if (trans_b) run(a, b.transpose());
  else run(a, b);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

double measure_gemm_gflops(int64_t n, int repeats) {
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  matmul<float>(false, false, n, n, n, a.data(), b.data(), c.data());  // warm-up
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    matmul<float>(false, false, n, n, n, a.data(), b.data(), c.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(2.0 * n * n * n / s * 1e-9);
  }
  return *std::max_element(rates.begin(), rates.end());
}

}  // namespace longctx
