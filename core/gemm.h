// Row-major GEMM on the CPU through Eigen: C[M,N] = alpha * op(A) op(B) + beta * C.
// op(A) is [M,K] (A stored [K,M] when trans_a), op(B) is [K,N] (B stored [N,K] when trans_b).
// Leading dimensions are row strides. Eigen threads the product with OpenMP unless it is
// called from inside a parallel region, where it runs single-threaded.
#pragma once
#include <cstdint>

namespace longctx {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Dense contiguous shorthand: C = op(A) op(B) (+ C when accumulate).
template <class T>
void matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, const T* B,
            T* C, bool accumulate = false) {
  gemm<T>(trans_a, trans_b, M, N, K, T(1), A, trans_a ? M : K, B, trans_b ? K : N,
          accumulate ? T(1) : T(0), C, N);
}

// Measured single-precision GEMM rate of this machine (square n), GFLOP/s: the best of
// `repeats` runs, since a ceiling is what the machine can do, and on a shared machine slow runs
// measure the neighbours, not the GEMM.
double measure_gemm_gflops(int64_t n = 1024, int repeats = 7);

}  // namespace longctx
