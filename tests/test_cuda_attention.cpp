// The GPU attention cores (attention/attention_cuda.h), flash and dense, forward (out, lse) and
// backward (dq, dk, dv) against a plain float64 reference on the same (already rounded) inputs:
// mha, gqa and mqa, causal or not, sequence lengths that are no multiple of the kernels' tiles,
// head sizes 24 to 128, float and bf16; outputs start as NaN so anything left unwritten fails.
// Backward runs twice and must give identical bits. Label `gpu`: skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cuda_env.h"
#include "core/error.h"

#if LONGCTX_HAVE_CUDA_KERNELS
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "attention/attention_cuda.h"
#include "tests/device_vec.h"
#include "tests/test_util.h"
#endif

namespace longctx {
namespace {

#if LONGCTX_HAVE_CUDA_KERNELS

using cuda::AttnDims;
using cuda::bf16;
using test::as_double;
using test::DeviceVec;
using test::from_float;
using test::to_double;

// Tolerances, relative in norm against float64 on the same inputs. fp32: the kernels sum in
// fp32, so the error is summation noise; a host emulation of these algorithms in fp32 measures
// ≤ 6e-7 on these shapes, and 1e-5 leaves a wide margin. bf16: every output is rounded once to
// 8 significant bits (≤ 2^-9 ≈ 2e-3 relative per element); dense also keeps P and dS in bf16
// (dP stays fp32), which the emulation put at ≤ 3.5e-3 with dP in bf16 too; 1e-2 leaves about
// 3x. lse stays fp32 from exact
// inputs in both (measured ~5e-8).
constexpr double kTolFp32 = 1e-5;
constexpr double kTolBf16 = 1e-2;
constexpr double kTolLse = 1e-6;

template <class T>
std::vector<T> filled(int64_t n, float value) {
  return std::vector<T>(n, from_float<T>(value));
}

struct Case {
  int64_t B, H, Hkv, T, D;
  bool causal;
};

std::string name(const Case& c) {
  return str("B", c.B, " H", c.H, " Hkv", c.Hkv, " T", c.T, " D", c.D,
             c.causal ? " causal" : " full");
}

// Sequence lengths straddle the 32- and 64-row tiles; head sizes cover 1, 2 and 4 threads per
// row, with and without a partial last slice.
const Case kCases[] = {
    {2, 2, 2, 67, 64, true},   {2, 2, 2, 67, 64, false},    // mha
    {1, 4, 2, 130, 128, true}, {1, 4, 2, 130, 128, false},  // gqa
    {2, 3, 1, 67, 24, true},   {2, 3, 1, 67, 24, false},    // mqa, small head
    {1, 2, 1, 200, 32, true},  {1, 2, 2, 33, 96, false},    // several key tiles; D = 96
    {1, 1, 1, 1, 64, true},                                 // one token
};

AttnDims dims_of(const Case& c) {
  AttnDims d;
  d.B = c.B;
  d.H = c.H;
  d.Hkv = c.Hkv;
  d.T = c.T;
  d.D = c.D;
  d.causal = c.causal;
  return d;
}

template <class T>
struct Inputs {
  std::vector<T> q, k, v, dout;
};

// Normal values already in the element type, so that the reference sees exactly what the GPU
// sees.
template <class T>
Inputs<T> make_inputs(const Case& c, uint64_t seed) {
  auto draw = [](int64_t n, uint64_t s) {
    const std::vector<float> f = test::randn<float>(n, s);
    std::vector<T> out(n);
    for (int64_t i = 0; i < n; ++i) out[i] = from_float<T>(f[i]);
    return out;
  };
  const int64_t nq = c.B * c.H * c.T * c.D, nk = c.B * c.Hkv * c.T * c.D;
  return {draw(nq, seed), draw(nk, seed + 1), draw(nk, seed + 2), draw(nq, seed + 3)};
}

struct Result {
  std::vector<double> out, lse, dq, dk, dv;
};

// out = softmax(scale · q kᵀ over allowed keys) v, lse its natural-log normaliser, and the
// gradient of Σ out ∘ dout: dS_ij = P_ij (dP_ij − Σ_l P_il dP_il) with dP = dout vᵀ,
// dq = scale · dS k, dk = scale · dSᵀ q, dv = Pᵀ dout. Query head h reads kv head h / (H / Hkv).
Result reference(const Case& c, const Inputs<double>& in, double scale) {
  const int64_t D = c.D, T = c.T;
  Result r;
  r.out.assign(in.q.size(), 0.0);
  r.dq.assign(in.q.size(), 0.0);
  r.lse.assign(c.B * c.H * T, 0.0);
  r.dk.assign(in.k.size(), 0.0);
  r.dv.assign(in.k.size(), 0.0);
  std::vector<double> p(T), dp(T);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h) {
      const int64_t bh = b * c.H + h, qo = bh * T * D, ko = (b * c.Hkv + h / (c.H / c.Hkv)) * T * D;
      for (int64_t i = 0; i < T; ++i) {
        const int64_t n = c.causal ? i + 1 : T;  // keys 0..n-1 are allowed
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += in.q[qo + i * D + d] * in.k[ko + j * D + d];
          p[j] = scale * s;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += p[j] = std::exp(p[j] - mx);
        for (int64_t j = 0; j < n; ++j) p[j] /= sum;
        r.lse[bh * T + i] = mx + std::log(sum);
        double rowsum = 0;
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) {
            r.out[qo + i * D + d] += p[j] * in.v[ko + j * D + d];
            s += in.dout[qo + i * D + d] * in.v[ko + j * D + d];
          }
          dp[j] = s;
          rowsum += p[j] * s;
        }
        for (int64_t j = 0; j < n; ++j) {
          const double ds = p[j] * (dp[j] - rowsum);
          for (int64_t d = 0; d < D; ++d) {
            r.dq[qo + i * D + d] += scale * ds * in.k[ko + j * D + d];
            r.dk[ko + j * D + d] += scale * ds * in.q[qo + i * D + d];
            r.dv[ko + j * D + d] += p[j] * in.dout[qo + i * D + d];
          }
        }
      }
    }
  return r;
}

// What a GPU core returns, as stored (for bitwise comparison) and in double.
template <class T>
struct GpuRun {
  std::vector<T> out, dq, dk, dv;
  std::vector<float> lse;  // flash only
};

template <class T>
GpuRun<T> run_flash(const Case& c, const Inputs<T>& in, float scale) {
  const AttnDims d = dims_of(c);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  DeviceVec<T> q(in.q), k(in.k), v(in.v), dout(in.dout);
  DeviceVec<T> out(filled<T>(in.q.size(), nan)), dq(filled<T>(in.q.size(), nan)),
      dk(filled<T>(in.k.size(), nan)), dv(filled<T>(in.k.size(), nan));
  DeviceVec<float> lse(std::vector<float>(c.B * c.H * c.T, nan)),
      scratch(std::vector<float>(cuda::flash_backward_scratch_floats(d), nan));
  cuda::flash_forward<T>(d, q.get(), k.get(), v.get(), out.get(), lse.get(), scale, nullptr);
  cuda::flash_backward<T>(d, q.get(), k.get(), v.get(), out.get(), lse.get(), dout.get(), dq.get(),
                          dk.get(), dv.get(), scale, scratch.get(), nullptr);
  test::cuda_ok(cudaDeviceSynchronize());
  return {out.host(), dq.host(), dk.host(), dv.host(), lse.host()};
}

template <class T>
GpuRun<T> run_dense(const Case& c, const Inputs<T>& in, float scale) {
  const AttnDims d = dims_of(c);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t n_scores = c.B * c.H * c.T * c.T;
  DeviceVec<T> q(in.q), k(in.k), v(in.v), dout(in.dout);
  DeviceVec<T> out(filled<T>(in.q.size(), nan)), dq(filled<T>(in.q.size(), nan)),
      dk(filled<T>(in.k.size(), nan)), dv(filled<T>(in.k.size(), nan));
  DeviceVec<T> probs(filled<T>(n_scores, nan)), dscores(filled<T>(n_scores, nan));
  DeviceVec<float> scores(std::vector<float>(n_scores, nan));
  GpuRun<T> r;
  {
    cuda::CublasLt blas(nullptr);
    cuda::dense_forward<T>(blas, d, q.get(), k.get(), v.get(), out.get(), probs.get(), scores.get(),
                           scale);
    cuda::dense_backward<T>(blas, d, q.get(), k.get(), v.get(), probs.get(), dout.get(), dq.get(),
                            dk.get(), dv.get(), scores.get(), dscores.get(), scale);
    test::cuda_ok(cudaDeviceSynchronize());
  }
  r.out = out.host();
  r.dq = dq.host();
  r.dk = dk.host();
  r.dv = dv.host();
  return r;
}

template <class T>
void check_against_reference(bool flash) {
  const double tol = std::is_same_v<T, float> ? kTolFp32 : kTolBf16;
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const Inputs<T> in = make_inputs<T>(c, 100 + c.T + c.D);
    const Inputs<double> ind{as_double(in.q), as_double(in.k), as_double(in.v), as_double(in.dout)};
    const double scale = 1.0 / std::sqrt(double(c.D));
    const Result ref = reference(c, ind, scale);
    const GpuRun<T> got =
        flash ? run_flash<T>(c, in, float(scale)) : run_dense<T>(c, in, float(scale));
    EXPECT_LE(test::rel_err(as_double(got.out), ref.out), tol) << "out";
    if (flash) {
      EXPECT_LE(test::rel_err(as_double(got.lse), ref.lse), kTolLse) << "lse";
    }
    EXPECT_LE(test::rel_err(as_double(got.dq), ref.dq), tol) << "dq";
    EXPECT_LE(test::rel_err(as_double(got.dk), ref.dk), tol) << "dk";
    EXPECT_LE(test::rel_err(as_double(got.dv), ref.dv), tol) << "dv";
  }
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
void check_deterministic(bool flash) {
  for (const Case& c : {kCases[2], kCases[5]}) {
    SCOPED_TRACE(name(c));
    const Inputs<T> in = make_inputs<T>(c, 7);
    const float scale = 1.0f / std::sqrt(float(c.D));
    const GpuRun<T> a = flash ? run_flash<T>(c, in, scale) : run_dense<T>(c, in, scale);
    const GpuRun<T> b = flash ? run_flash<T>(c, in, scale) : run_dense<T>(c, in, scale);
    EXPECT_TRUE(same_bits(a.out, b.out)) << "out";
    EXPECT_TRUE(same_bits(a.lse, b.lse)) << "lse";
    EXPECT_TRUE(same_bits(a.dq, b.dq)) << "dq";
    EXPECT_TRUE(same_bits(a.dk, b.dk)) << "dk";
    EXPECT_TRUE(same_bits(a.dv, b.dv)) << "dv";
  }
}

#define SKIP_WITHOUT_DEVICE() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

TEST(CudaFlashAttention, FloatMatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  check_against_reference<float>(true);
}

TEST(CudaFlashAttention, Bf16MatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  check_against_reference<bf16>(true);
}

TEST(CudaFlashAttention, BackwardIsBitwiseReproducible) {
  SKIP_WITHOUT_DEVICE();
  check_deterministic<float>(true);
  check_deterministic<bf16>(true);
}

TEST(CudaDenseAttention, FloatMatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  check_against_reference<float>(false);
}

TEST(CudaDenseAttention, Bf16MatchesFloat64) {
  SKIP_WITHOUT_DEVICE();
  check_against_reference<bf16>(false);
}

TEST(CudaDenseAttention, BackwardIsBitwiseReproducible) {
  SKIP_WITHOUT_DEVICE();
  check_deterministic<float>(false);
  check_deterministic<bf16>(false);
}

// The shape checks come before any CUDA call, so this runs without a device too.
TEST(CudaFlashAttention, RejectsUnsupportedShapesClearly) {
  auto message = [](const AttnDims& d) {
    try {
      cuda::flash_forward<float>(d, nullptr, nullptr, nullptr, nullptr, nullptr, 1.0f, nullptr);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  AttnDims d;
  d.D = 130;
  EXPECT_NE(message(d).find("head size D=130"), std::string::npos) << message(d);
  d.D = 63;
  EXPECT_NE(message(d).find("head size D=63"), std::string::npos) << message(d);
  d.D = 64;
  d.H = 3;
  d.Hkv = 2;
  EXPECT_NE(message(d).find("does not divide"), std::string::npos) << message(d);
}

#else

TEST(CudaAttention, Skipped) { GTEST_SKIP() << "built without CUDA kernels"; }

#endif

}  // namespace
}  // namespace longctx
