// cuBLASLt GEMMs (core/gemm_cuda.h) against core/gemm.h's matmul<double> on the same values:
// every transpose combination, sizes that are no multiple of any tile, accumulate and alpha,
// strided batches with gaps between the matrices (which must stay untouched), float and bf16
// inputs, float and bf16 outputs. Label `gpu`: skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/cuda_env.h"

#if LONGCTX_HAVE_CUDA_KERNELS
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/gemm.h"
#include "core/gemm_cuda.h"
#include "tests/device_vec.h"
#include "tests/test_util.h"
#endif

namespace longctx {
namespace {

#if LONGCTX_HAVE_CUDA_KERNELS

using cuda::bf16;
using test::as_double;
using test::DeviceVec;
using test::from_float;
using test::to_double;

// Tolerances, relative in norm against the float64 product of the same (already rounded) inputs.
// With fp32 accumulation and exact inputs the error is fp32 summation noise, ~1e-7 for K ≈ 30.
constexpr double kTolFp32Out = 1e-5;
// A bf16 output is rounded once to 8 significant bits: at most 2^-9 ≈ 2e-3 relative per
// element, so at most that in norm; 4e-3 leaves room for the fp32 accumulation.
constexpr double kTolBf16Out = 4e-3;

// Normal values already in the element type, so that the reference sees exactly what the GPU
// sees.
template <class T>
std::vector<T> random_values(int64_t n, uint64_t seed) {
  const std::vector<float> f = test::randn<float>(n, seed);
  std::vector<T> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = from_float<T>(f[i]);
  return out;
}

template <class T>
std::vector<double> slice_double(const std::vector<T>& x, int64_t offset, int64_t n) {
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = to_double(x[offset + i]);
  return out;
}

struct GemmCase {
  bool trans_a, trans_b;
  int64_t M, N, K;
  int64_t batch = 1;  // 1: the plain matmul; more: matmul_batched with gaps between matrices
  bool accumulate = false;
  float alpha = 1.0f;
};

template <class Tin, class Tout>
void check_gemm(const GemmCase& c) {
  SCOPED_TRACE(testing::Message() << "trans_a " << c.trans_a << " trans_b " << c.trans_b << " M "
                                  << c.M << " N " << c.N << " K " << c.K << " batch " << c.batch
                                  << " accumulate " << c.accumulate << " alpha " << c.alpha);
  const int64_t M = c.M, N = c.N, K = c.K;
  const bool batched = c.batch > 1;
  // Odd gaps: matrix i starts i · stride elements in, not at a multiple of any alignment.
  const int64_t sa = M * K + (batched ? 3 : 0), sb = K * N + (batched ? 5 : 0),
                sc = M * N + (batched ? 7 : 0);
  const std::vector<Tin> a = random_values<Tin>(sa * c.batch, 11);
  const std::vector<Tin> b = random_values<Tin>(sb * c.batch, 12);
  const std::vector<Tout> c0 = random_values<Tout>(sc * c.batch, 13);
  DeviceVec<Tin> da(a), db(b);
  DeviceVec<Tout> dc(c0);
  {
    cuda::CublasLt blas(nullptr);
    if (batched)
      blas.matmul_batched<Tin, Tout>(c.trans_a, c.trans_b, M, N, K, da.get(), sa, db.get(), sb,
                                     dc.get(), sc, c.batch, c.accumulate, c.alpha);
    else
      blas.matmul<Tin, Tout>(c.trans_a, c.trans_b, M, N, K, da.get(), db.get(), dc.get(),
                             c.accumulate, c.alpha);
    test::cuda_ok(cudaDeviceSynchronize());
  }
  const std::vector<Tout> got = dc.host();

  std::vector<double> ref_all, got_all;
  std::vector<double> prod(M * N);
  for (int64_t i = 0; i < c.batch; ++i) {
    const std::vector<double> ai = slice_double(a, i * sa, M * K),
                              bi = slice_double(b, i * sb, K * N);
    matmul<double>(c.trans_a, c.trans_b, M, N, K, ai.data(), bi.data(), prod.data());
    for (int64_t r = 0; r < M * N; ++r) {
      ref_all.push_back(c.alpha * prod[r] + (c.accumulate ? to_double(c0[i * sc + r]) : 0.0));
      got_all.push_back(to_double(got[i * sc + r]));
    }
    for (int64_t r = M * N; r < sc && i * sc + r < int64_t(got.size()); ++r)
      ASSERT_EQ(to_double(got[i * sc + r]), to_double(c0[i * sc + r])) << "gap written at " << r;
  }
  const double tol = std::is_same_v<Tout, float> ? kTolFp32Out : kTolBf16Out;
  EXPECT_LE(test::rel_err(got_all, ref_all), tol);
}

template <class Tin, class Tout>
void check_all_transposes(GemmCase c) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      c.trans_a = ta;
      c.trans_b = tb;
      check_gemm<Tin, Tout>(c);
    }
}

#define SKIP_WITHOUT_DEVICE() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

TEST(CudaGemm, FloatMatchesDoubleForAllTransposes) {
  SKIP_WITHOUT_DEVICE();
  check_all_transposes<float, float>({false, false, 37, 53, 29});
  check_all_transposes<float, float>({false, false, 1, 7, 1});
  check_all_transposes<float, float>({false, false, 130, 67, 200});
}

TEST(CudaGemm, Bf16InputsFloatOutput) {
  SKIP_WITHOUT_DEVICE();
  check_all_transposes<bf16, float>({false, false, 37, 53, 29});
  check_all_transposes<bf16, float>({false, false, 200, 136, 264});
}

TEST(CudaGemm, Bf16Outputs) {
  SKIP_WITHOUT_DEVICE();
  check_all_transposes<bf16, bf16>({false, false, 37, 53, 29});
  check_all_transposes<bf16, bf16>({false, false, 200, 136, 264});
}

TEST(CudaGemm, AccumulateAndAlpha) {
  SKIP_WITHOUT_DEVICE();
  const std::pair<bool, float> settings[] = {{true, 1.0f}, {true, 0.5f}, {false, -1.5f}};
  for (const auto& [acc, alpha] : settings) {
    check_all_transposes<float, float>({false, false, 37, 53, 29, 1, acc, alpha});
    check_all_transposes<bf16, float>({false, false, 37, 53, 29, 1, acc, alpha});
    check_all_transposes<bf16, bf16>({false, false, 37, 53, 29, 1, acc, alpha});
  }
}

TEST(CudaGemm, StridedBatchesLeaveTheGapsAlone) {
  SKIP_WITHOUT_DEVICE();
  check_all_transposes<float, float>({false, false, 37, 53, 29, 3});
  check_all_transposes<bf16, float>({false, false, 37, 53, 29, 3, true, 0.25f});
  check_all_transposes<bf16, bf16>({false, false, 37, 53, 29, 3});
}

TEST(CudaGemm, MeasuresABf16Rate) {
  SKIP_WITHOUT_DEVICE();
  const double tflops = cuda::measure_gemm_tflops_bf16(2048, 3);
  // Any current GPU does well over 1 TFLOP/s in bf16; this catches a broken timer or unit.
  EXPECT_GT(tflops, 1.0);
  EXPECT_LT(tflops, 1e5);
}

#else

TEST(CudaGemm, Skipped) { GTEST_SKIP() << "built without CUDA kernels"; }

#endif

}  // namespace
}  // namespace longctx
