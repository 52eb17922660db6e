// The model's CUDA kernels (model/cuda_ops.h, MLA's among them) and the optimizer's
// (trainer/adamw_cuda.h) against their CPU counterparts run in double on the same inputs, for T =
// float and T = bf16 (bf16 inputs are rounded first and the reference gets the rounded values), at
// sizes that are not multiples of any block size. Label `gpu`: skipped without a CUDA device.
#include <gtest/gtest.h>

#include "core/cuda_env.h"

#if LONGCTX_HAVE_CUDA_KERNELS
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "attention/head_layout.h"
#include "core/config.h"
#include "core/param_store.h"
#include "core/rng.h"
#include "model/activation.h"
#include "model/cross_entropy.h"
#include "model/cuda_ops.h"
#include "model/embedding.h"
#include "model/norm.h"
#include "model/rope.h"
#include "tests/device_vec.h"
#include "tests/test_util.h"
#include "trainer/adamw.h"
#include "trainer/adamw_cuda.h"
#endif

namespace longctx {
namespace {

#if LONGCTX_HAVE_CUDA_KERNELS

using cuda::bf16;
using test::as_double;
using test::DeviceVec;
using test::from_float;
using test::rel_err;
using test::to_double;

// Relative error ‖gpu − ref‖/‖ref‖ bounds. fp32 results: a few float roundings per element and
// sums of at most ~10⁴ terms stay well under 1e-5. bf16 results: the kernel computes in fp32
// and rounds once to bf16, whose 8-bit significand has a unit roundoff of 2⁻⁸ ≈ 0.0039 (the
// worst case per element; the norm-wise error is about half that), so 1e-2 leaves a margin of
// more than 2 while still catching any wrong formula or index.
constexpr double kF32Tol = 1e-5;
template <class T>
constexpr double tol() {
  return std::is_same_v<T, float> ? kF32Tol : 1e-2;
}

// Normal(mean, std) values rounded to T (`dev`), and the same values in double (`ref`).
template <class T>
struct Input {
  std::vector<T> dev;
  std::vector<double> ref;
};
template <class T>
Input<T> make_input(int64_t n, uint64_t seed, double std = 1.0, double mean = 0.0) {
  const std::vector<float> f = test::randn<float>(n, seed, std);
  Input<T> in;
  for (float x : f) {
    in.dev.push_back(from_float<T>(float(mean) + x));
    in.ref.push_back(to_double(in.dev.back()));
  }
  return in;
}

template <class T>
std::vector<T> zeros(int64_t n) {
  return std::vector<T>(size_t(n));
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Waits for the kernels and surfaces any fault they hit.
void sync() { test::cuda_ok(cudaDeviceSynchronize()); }

#define SKIP_WITHOUT_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

template <class T>
class CudaOps : public ::testing::Test {};
using ActivationTypes = ::testing::Types<float, bf16>;
struct TypeNames {
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, float> ? "f32" : "bf16";
  }
};
TYPED_TEST_SUITE(CudaOps, ActivationTypes, TypeNames);

// Host-only: the grouping the embedding's gradient relies on (runs without a GPU too).
TEST(CudaOpsHost, GroupRowsByTokenSortsRowsPerToken) {
  const std::vector<int32_t> tokens = {5, 3, 5, 0, 3, 5};
  const cuda::TokenGroups g = cuda::group_rows_by_token(tokens.data(), 6);
  EXPECT_EQ(g.token, (std::vector<int32_t>{0, 3, 5}));
  EXPECT_EQ(g.start, (std::vector<int32_t>{0, 1, 3, 6}));
  EXPECT_EQ(g.rows, (std::vector<int32_t>{3, 1, 4, 0, 2, 5}));
  const cuda::TokenGroups empty = cuda::group_rows_by_token(tokens.data(), 0);
  EXPECT_TRUE(empty.token.empty());
  EXPECT_EQ(empty.start, (std::vector<int32_t>{0}));
}

// Forward with and without positions; backward with many repeated tokens, accumulating onto
// nonzero gradients, bit-identical over two runs.
TYPED_TEST(CudaOps, EmbeddingMatchesCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const int64_t B = 3, Tn = 37, C = 97, V = 1001, N = B * Tn;
  std::vector<int32_t> tokens(N);
  Rng rng(7);
  for (int64_t r = 0; r < N; ++r) tokens[r] = int32_t(rng.below(40));  // many repeats
  tokens[5] = int32_t(V - 1);
  tokens[77] = int32_t(V - 1);
  const Input<T> wte = make_input<T>(V * C, 1), wpe = make_input<T>(Tn * C, 2);
  DeviceVec<int32_t> d_tokens(tokens);
  DeviceVec<T> d_wte(wte.dev), d_wpe(wpe.dev), d_out(zeros<T>(N * C));

  for (bool with_pos : {true, false}) {
    cuda::embedding_forward<T>(d_out.get(), d_tokens.get(), d_wte.get(),
                               with_pos ? d_wpe.get() : nullptr, N, Tn, C, nullptr);
    sync();
    std::vector<double> ref(N * C);
    embedding_forward<double>(ref.data(), tokens.data(), wte.ref.data(),
                              with_pos ? wpe.ref.data() : nullptr, B, Tn, C, nullptr);
    EXPECT_LE(rel_err(as_double(d_out.host()), ref), tol<T>()) << "with_pos " << with_pos;
  }

  const Input<T> dout = make_input<T>(N * C, 3);
  const std::vector<float> dwte0 = test::randn<float>(V * C, 4),
                           dwpe0 = test::randn<float>(Tn * C, 5);
  const cuda::TokenGroups groups = cuda::group_rows_by_token(tokens.data(), N);
  const int64_t G = int64_t(groups.token.size());
  DeviceVec<int32_t> g_token(groups.token), g_start(groups.start), g_rows(groups.rows);
  DeviceVec<T> d_dout(dout.dev);
  auto run = [&](bool with_pos, std::vector<float>* dwte, std::vector<float>* dwpe) {
    DeviceVec<float> d_dwte(dwte0), d_dwpe(dwpe0);
    cuda::embedding_backward<T>(d_dwte.get(), with_pos ? d_dwpe.get() : nullptr, d_dout.get(),
                                g_token.get(), g_start.get(), g_rows.get(), G, N, Tn, C, nullptr);
    sync();
    *dwte = d_dwte.host();
    *dwpe = d_dwpe.host();
  };
  std::vector<float> dwte1, dwpe1, dwte2, dwpe2;
  run(true, &dwte1, &dwpe1);
  run(false, &dwte2, &dwpe2);

  std::vector<double> ref_dwte(dwte0.begin(), dwte0.end()), ref_dwpe(dwpe0.begin(), dwpe0.end());
  embedding_backward<double>(ref_dwte.data(), ref_dwpe.data(), dout.ref.data(), tokens.data(), B,
                             Tn, C, nullptr);
  // Inputs and results are fp32 or exact bf16 values: fp32 sums of a few dozen terms.
  EXPECT_LE(rel_err(as_double(dwte1), ref_dwte), kF32Tol);
  EXPECT_LE(rel_err(as_double(dwpe1), ref_dwpe), kF32Tol);
  EXPECT_TRUE(same_bits(dwte1, dwte2)) << "the token gradient differs between two runs";
  EXPECT_TRUE(same_bits(dwpe2, dwpe0)) << "dwpe changed though it was not passed";
}

struct NormShape {
  int64_t N, C;
};
// Rows and columns not multiples of the block sizes; 9001 rows span the most row chunks with a
// short last one.
const NormShape kNormShapes[] = {{37, 97}, {300, 1000}, {9001, 33}};

TYPED_TEST(CudaOps, LayerNormMatchesCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (const NormShape& s : kNormShapes) {
    const int64_t N = s.N, C = s.C;
    SCOPED_TRACE(testing::Message() << "N " << N << ", C " << C);
    const Input<T> x = make_input<T>(N * C, 11, 2.0, 0.5), w = make_input<T>(C, 12, 0.1, 1.0),
                   b = make_input<T>(C, 13, 0.1), dout = make_input<T>(N * C, 14),
                   dx0 = make_input<T>(N * C, 15);
    std::vector<double> out(N * C), mean(N), rstd(N);
    layernorm_forward<double>(out.data(), mean.data(), rstd.data(), x.ref.data(), w.ref.data(),
                              b.ref.data(), N, C);

    DeviceVec<T> d_x(x.dev), d_w(w.dev), d_b(b.dev), d_out(zeros<T>(N * C));
    DeviceVec<float> d_mean(zeros<float>(N)), d_rstd(zeros<float>(N));
    cuda::layernorm_forward<T>(d_out.get(), d_mean.get(), d_rstd.get(), d_x.get(), d_w.get(),
                               d_b.get(), N, C, nullptr);
    sync();
    EXPECT_LE(rel_err(as_double(d_out.host()), out), tol<T>());
    EXPECT_LE(rel_err(as_double(d_mean.host()), mean), kF32Tol);
    EXPECT_LE(rel_err(as_double(d_rstd.host()), rstd), kF32Tol);

    // Backward from the reference statistics (rounded to fp32, as the kernels keep them).
    const std::vector<float> dw0_f = test::randn<float>(C, 16), db0_f = test::randn<float>(C, 17);
    std::vector<double> dx = dx0.ref, dw(dw0_f.begin(), dw0_f.end()),
                        db(db0_f.begin(), db0_f.end());
    layernorm_backward<double>(dx.data(), dw.data(), db.data(), dout.ref.data(), x.ref.data(),
                               w.ref.data(), mean.data(), rstd.data(), N, C);
    const std::vector<float> mean_f(mean.begin(), mean.end()), rstd_f(rstd.begin(), rstd.end());
    DeviceVec<float> d_mf(mean_f), d_rf(rstd_f);
    DeviceVec<T> d_dout(dout.dev);
    DeviceVec<float> scratch(zeros<float>(cuda::norm_backward_scratch_floats(N, C)));
    std::vector<float> dw_runs[2];
    for (int run = 0; run < 2; ++run) {
      DeviceVec<T> d_dx(dx0.dev);
      DeviceVec<float> d_dw(dw0_f), d_db(db0_f);
      cuda::layernorm_backward<T>(d_dx.get(), d_dw.get(), d_db.get(), d_dout.get(), d_x.get(),
                                  d_w.get(), d_mf.get(), d_rf.get(), N, C, scratch.get(), nullptr);
      sync();
      dw_runs[run] = d_dw.host();
      if (run > 0) continue;
      EXPECT_LE(rel_err(as_double(d_dx.host()), dx), tol<T>());
      EXPECT_LE(rel_err(as_double(dw_runs[0]), dw), kF32Tol);
      EXPECT_LE(rel_err(as_double(d_db.host()), db), kF32Tol);
    }
    EXPECT_TRUE(same_bits(dw_runs[0], dw_runs[1])) << "dw differs between two runs";
  }
}

TYPED_TEST(CudaOps, RmsNormMatchesCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  for (const NormShape& s : kNormShapes) {
    const int64_t N = s.N, C = s.C;
    SCOPED_TRACE(testing::Message() << "N " << N << ", C " << C);
    const Input<T> x = make_input<T>(N * C, 21, 2.0, 0.5), w = make_input<T>(C, 22, 0.1, 1.0),
                   dout = make_input<T>(N * C, 23), dx0 = make_input<T>(N * C, 24);
    std::vector<double> out(N * C), rstd(N);
    rmsnorm_forward<double>(out.data(), rstd.data(), x.ref.data(), w.ref.data(), N, C);

    DeviceVec<T> d_x(x.dev), d_w(w.dev), d_out(zeros<T>(N * C));
    DeviceVec<float> d_rstd(zeros<float>(N));
    cuda::rmsnorm_forward<T>(d_out.get(), d_rstd.get(), d_x.get(), d_w.get(), N, C, nullptr);
    sync();
    EXPECT_LE(rel_err(as_double(d_out.host()), out), tol<T>());
    EXPECT_LE(rel_err(as_double(d_rstd.host()), rstd), kF32Tol);

    const std::vector<float> dw0_f = test::randn<float>(C, 25);
    std::vector<double> dx = dx0.ref, dw(dw0_f.begin(), dw0_f.end());
    rmsnorm_backward<double>(dx.data(), dw.data(), dout.ref.data(), x.ref.data(), w.ref.data(),
                             rstd.data(), N, C);
    const std::vector<float> rstd_f(rstd.begin(), rstd.end());
    DeviceVec<float> d_rf(rstd_f), d_dw(dw0_f);
    DeviceVec<T> d_dout(dout.dev), d_dx(dx0.dev);
    DeviceVec<float> scratch(zeros<float>(cuda::norm_backward_scratch_floats(N, C)));
    cuda::rmsnorm_backward<T>(d_dx.get(), d_dw.get(), d_dout.get(), d_x.get(), d_w.get(),
                              d_rf.get(), N, C, scratch.get(), nullptr);
    sync();
    EXPECT_LE(rel_err(as_double(d_dx.host()), dx), tol<T>());
    EXPECT_LE(rel_err(as_double(d_dw.host()), dw), kF32Tol);
  }
}

// Forward and inverse against the CPU, and inverse ∘ forward = identity.
TYPED_TEST(CudaOps, RopeMatchesCpuAndInverts) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const int64_t BH = 5, Tn = 37, D = 74, max_pos = 64;  // D/2 = 37: odd pair count
  const RopeTable<float> table_f(max_pos, D);
  const RopeTable<double> table_d(max_pos, D);
  DeviceVec<float> d_cos(table_f.cos), d_sin(table_f.sin);
  const Input<T> x = make_input<T>(BH * Tn * D, 31);
  for (bool inverse : {false, true}) {
    DeviceVec<T> d_x(x.dev);
    cuda::rope_apply<T>(d_x.get(), d_cos.get(), d_sin.get(), BH, Tn, D, inverse, nullptr);
    sync();
    std::vector<double> ref = x.ref;
    rope_apply<double>(ref.data(), table_d, BH, 1, Tn, D, 0, inverse);
    EXPECT_LE(rel_err(as_double(d_x.host()), ref), tol<T>()) << "inverse " << inverse;
  }
  DeviceVec<T> d_x(x.dev);
  cuda::rope_apply<T>(d_x.get(), d_cos.get(), d_sin.get(), BH, Tn, D, false, nullptr);
  cuda::rope_apply<T>(d_x.get(), d_cos.get(), d_sin.get(), BH, Tn, D, true, nullptr);
  sync();
  // bf16: two roundings, each at most 2⁻⁸ relative.
  EXPECT_LE(rel_err(as_double(d_x.host()), x.ref), tol<T>());
}

// MLA: RoPE on the rope slice of each query head and on the shared key against the CPU op;
// keys assembled from per-head content parts and the shared key (copies: exact), and the
// gradient split back with the shared key's gradient summed over heads (the reference in double).
TYPED_TEST(CudaOps, MlaKernelsMatchCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const int64_t B = 2, H = 5, Tn = 37, Dn = 26, R = 14, D = Dn + R, max_pos = 64;  // R/2 odd
  const RopeTable<float> table_f(max_pos, R);
  const RopeTable<double> table_d(max_pos, R);
  DeviceVec<float> d_cos(table_f.cos), d_sin(table_f.sin);
  for (const int64_t width : {D, R})  // query heads [B, H, T, D] (offset Dn), the key [B·T, R]
    for (bool inverse : {false, true}) {
      const int64_t rows = width == D ? B * H * Tn : B * Tn, offset = width - R;
      const Input<T> x = make_input<T>(rows * width, 71);
      DeviceVec<T> d_x(x.dev);
      cuda::rope_apply_slice<T>(d_x.get(), d_cos.get(), d_sin.get(), rows, Tn, width, offset, R,
                                inverse, nullptr);
      sync();
      std::vector<double> ref = x.ref;
      rope_apply_slice<double>(ref.data(), table_d, rows / Tn, Tn, 1, width, offset, 0, inverse);
      EXPECT_LE(rel_err(as_double(d_x.host()), ref), tol<T>())
          << "width " << width << ", inverse " << inverse;
    }

  const Input<T> nope = make_input<T>(B * Tn * H * Dn, 72),
                 rope_key = make_input<T>(B * Tn * R, 73);
  std::vector<double> k(size_t(B * H * Tn * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t d = 0; d < D; ++d)
          k[size_t(((b * H + h) * Tn + t) * D + d)] =
              d < Dn ? nope.ref[size_t(((b * Tn + t) * H + h) * Dn + d)]
                     : rope_key.ref[size_t((b * Tn + t) * R + d - Dn)];
  DeviceVec<T> d_nope(nope.dev), d_rope_key(rope_key.dev), d_k(zeros<T>(B * H * Tn * D));
  cuda::mla_assemble_keys<T>(d_k.get(), d_nope.get(), d_rope_key.get(), B, Tn, H, Dn, R, nullptr);
  sync();
  EXPECT_EQ(as_double(d_k.host()), k);

  const Input<T> dk = make_input<T>(B * H * Tn * D, 74);
  std::vector<double> dnope(size_t(B * Tn * H * Dn)), drope(size_t(B * Tn * R), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t d = 0; d < D; ++d) {
          const double g = dk.ref[size_t(((b * H + h) * Tn + t) * D + d)];
          if (d < Dn)
            dnope[size_t(((b * Tn + t) * H + h) * Dn + d)] = g;
          else
            drope[size_t((b * Tn + t) * R + d - Dn)] += g;
        }
  DeviceVec<T> d_dk(dk.dev);
  cuda::mla_split_key_grads<T>(d_nope.get(), d_rope_key.get(), d_dk.get(), B, Tn, H, Dn, R,
                               nullptr);
  sync();
  EXPECT_EQ(as_double(d_nope.host()), dnope);
  // Sums of 5 terms in fp32, rounded once to T.
  EXPECT_LE(rel_err(as_double(d_rope_key.host()), drope), tol<T>());
}

TYPED_TEST(CudaOps, ActivationsMatchCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const int64_t n = 1001;
  const Input<T> x = make_input<T>(n, 41, 2.0), up = make_input<T>(n, 42),
                 dout = make_input<T>(n, 43);
  DeviceVec<T> d_x(x.dev), d_up(up.dev), d_dout(dout.dev), d_a(zeros<T>(n)), d_b(zeros<T>(n));
  std::vector<double> ref_a(n), ref_b(n);

  cuda::gelu_forward<T>(d_a.get(), d_x.get(), n, nullptr);
  sync();
  gelu_forward<double>(ref_a.data(), x.ref.data(), n);
  EXPECT_LE(rel_err(as_double(d_a.host()), ref_a), tol<T>()) << "gelu forward";

  cuda::gelu_backward<T>(d_a.get(), d_dout.get(), d_x.get(), n, nullptr);
  sync();
  gelu_backward<double>(ref_a.data(), dout.ref.data(), x.ref.data(), n);
  EXPECT_LE(rel_err(as_double(d_a.host()), ref_a), tol<T>()) << "gelu backward";

  cuda::swiglu_forward<T>(d_a.get(), d_x.get(), d_up.get(), n, nullptr);
  sync();
  swiglu_forward<double>(ref_a.data(), x.ref.data(), up.ref.data(), n);
  EXPECT_LE(rel_err(as_double(d_a.host()), ref_a), tol<T>()) << "swiglu forward";

  cuda::swiglu_backward<T>(d_a.get(), d_b.get(), d_dout.get(), d_x.get(), d_up.get(), n, nullptr);
  sync();
  swiglu_backward<double>(ref_a.data(), ref_b.data(), dout.ref.data(), x.ref.data(), up.ref.data(),
                          n);
  EXPECT_LE(rel_err(as_double(d_a.host()), ref_a), tol<T>()) << "swiglu dgate";
  EXPECT_LE(rel_err(as_double(d_b.host()), ref_b), tol<T>()) << "swiglu dup";
}

// In place: out aliases a.
TYPED_TEST(CudaOps, AddInPlace) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const int64_t n = 1001;
  const Input<T> a = make_input<T>(n, 51), b = make_input<T>(n, 52);
  DeviceVec<T> d_a(a.dev), d_b(b.dev);
  cuda::add<T>(d_a.get(), d_a.get(), d_b.get(), n, nullptr);
  sync();
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = a.ref[i] + b.ref[i];
  EXPECT_LE(rel_err(as_double(d_a.host()), ref), tol<T>());
}

// Conversions are exact or round to nearest even, as the host's conversion: same bits.
TEST(CudaOpsConvert, MatchesHostConversionBitForBit) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 1001;
  const std::vector<float> f = test::randn<float>(n, 61, 3.0);
  std::vector<bf16> h(n);
  for (int64_t i = 0; i < n; ++i) h[i] = __float2bfloat16(f[i]);
  DeviceVec<float> d_f(f), d_f2(zeros<float>(n));
  DeviceVec<bf16> d_h(zeros<bf16>(n)), d_h2(zeros<bf16>(n));

  cuda::convert<bf16, float>(d_h.get(), d_f.get(), n, nullptr);
  cuda::convert<bf16, bf16>(d_h2.get(), d_h.get(), n, nullptr);
  sync();
  EXPECT_TRUE(same_bits(d_h.host(), h)) << "bf16 <- float";
  EXPECT_TRUE(same_bits(d_h2.host(), h)) << "bf16 <- bf16";

  cuda::convert<float, float>(d_f2.get(), d_f.get(), n, nullptr);
  sync();
  EXPECT_TRUE(same_bits(d_f2.host(), f)) << "float <- float";
  cuda::convert<float, bf16>(d_f2.get(), d_h.get(), n, nullptr);
  sync();
  std::vector<float> widened(n);
  for (int64_t i = 0; i < n; ++i) widened[i] = __bfloat162float(h[i]);
  EXPECT_TRUE(same_bits(d_f2.host(), widened)) << "float <- bf16";
}

// Pure copies: the same bits as attention/head_layout.h, and merge ∘ split = identity.
TYPED_TEST(CudaOps, SplitMergeHeadsMatchCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const int64_t B = 2, Tn = 37, H = 3, D = 13, n = B * Tn * H * D;
  const Input<T> x = make_input<T>(n, 71);
  DeviceVec<T> d_x(x.dev), d_s(zeros<T>(n)), d_m(zeros<T>(n));
  cuda::split_heads<T>(d_s.get(), d_x.get(), B, Tn, H, D, nullptr);
  cuda::merge_heads<T>(d_m.get(), d_s.get(), B, Tn, H, D, nullptr);
  sync();
  std::vector<T> split(n), merged(n);
  split_heads<T>(split.data(), x.dev.data(), B, Tn, H, D);
  merge_heads<T>(merged.data(), x.dev.data(), B, Tn, H, D);
  EXPECT_TRUE(same_bits(d_s.host(), split)) << "split";
  EXPECT_TRUE(same_bits(d_m.host(), x.dev)) << "merge of split";
  cuda::merge_heads<T>(d_m.get(), d_x.get(), B, Tn, H, D, nullptr);
  sync();
  EXPECT_TRUE(same_bits(d_m.host(), merged)) << "merge";
}

// Ignored targets every fifth row; V = 50257 (GPT-2's) spans many passes of a block. Backward
// out of place against the CPU, and in place with the same bits.
TYPED_TEST(CudaOps, CrossEntropyMatchesCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  struct Shape {
    int64_t N, V;
  };
  for (const Shape s : {Shape{37, 1001}, Shape{3, 50257}}) {
    const int64_t N = s.N, V = s.V;
    SCOPED_TRACE(testing::Message() << "N " << N << ", V " << V);
    const Input<T> logits = make_input<T>(N * V, 81, 3.0);
    std::vector<int32_t> targets(N);
    Rng rng(82);
    for (int64_t r = 0; r < N; ++r)
      targets[r] = r % 5 == 1 ? kIgnoreIndex : int32_t(rng.below(uint64_t(V)));
    if (N > 2) targets[2] = int32_t(V - 1);

    std::vector<double> losses(N), lse(N, 0.0);
    int64_t count = 0;
    cross_entropy_forward<double>(losses.data(), logits.ref.data(), targets.data(), N, V, &count);
    for (int64_t r = 0; r < N; ++r) {
      if (targets[r] == kIgnoreIndex) continue;
      const double* x = logits.ref.data() + r * V;
      double m = x[0], sum = 0;
      for (int64_t j = 0; j < V; ++j) m = std::max(m, x[j]);
      for (int64_t j = 0; j < V; ++j) sum += std::exp(x[j] - m);
      lse[r] = m + std::log(sum);
    }

    DeviceVec<T> d_logits(logits.dev), d_dlogits(zeros<T>(N * V));
    DeviceVec<int32_t> d_targets(targets);
    DeviceVec<float> d_losses(std::vector<float>(N, 7.0f)), d_lse(std::vector<float>(N, 7.0f));
    cuda::cross_entropy_forward<T>(d_losses.get(), d_lse.get(), d_logits.get(), d_targets.get(), N,
                                   V, nullptr);
    sync();
    const std::vector<float> g_losses = d_losses.host(), g_lse = d_lse.host();
    // Results in fp32 from the same (rounded) logits.
    EXPECT_LE(rel_err(as_double(g_losses), losses), kF32Tol);
    EXPECT_LE(rel_err(as_double(g_lse), lse), kF32Tol);
    for (int64_t r = 0; r < N; ++r) {
      if (targets[r] != kIgnoreIndex) continue;
      EXPECT_EQ(g_losses[r], 0.0f) << "row " << r;
      EXPECT_EQ(g_lse[r], 0.0f) << "row " << r;
    }

    const double scale = 1.0 / double(count);
    std::vector<double> dlogits(N * V);
    cross_entropy_backward<double>(dlogits.data(), logits.ref.data(), targets.data(), N, V, scale);
    cuda::cross_entropy_backward<T>(d_dlogits.get(), d_logits.get(), d_lse.get(), d_targets.get(),
                                    N, V, float(scale), nullptr);
    sync();
    const std::vector<T> g_d = d_dlogits.host();
    EXPECT_LE(rel_err(as_double(g_d), dlogits), tol<T>());
    for (int64_t r = 0; r < N; ++r) {
      if (targets[r] != kIgnoreIndex) continue;
      for (int64_t j = 0; j < V; ++j) {
        ASSERT_EQ(to_double(g_d[r * V + j]), 0.0) << r << ", " << j;
      }
    }

    cuda::cross_entropy_backward<T>(d_logits.get(), d_logits.get(), d_lse.get(), d_targets.get(), N,
                                    V, float(scale), nullptr);
    sync();
    EXPECT_TRUE(same_bits(d_logits.host(), g_d)) << "in place differs from out of place";
  }
}

// Three steps against AdamW<double>, on a parameter with weight decay and one without; grads
// scaled by 0.5 on the GPU and by the same factor (exact) for the CPU.
TEST(CudaOpsAdamW, MatchesCpuOverThreeSteps) {
  SKIP_WITHOUT_GPU();
  ParamStore<double> store;
  store.add("w", {1001}, true);
  store.add("norm", {37}, false);
  store.allocate();
  const int64_t n = store.size();
  const std::vector<float> w0 = test::randn<float>(n, 91);
  for (int64_t i = 0; i < n; ++i) store.values[i] = w0[i];
  TrainConfig cfg;
  cfg.weight_decay = 0.1;
  AdamW<double> opt(store, cfg);

  DeviceVec<float> d_w(w0), d_m(zeros<float>(n)), d_v(zeros<float>(n));
  DeviceVec<bf16> d_copy(zeros<bf16>(n));
  const float grad_scale = 0.5f;
  for (int64_t t = 1; t <= 3; ++t) {
    const double lr = 0.02 * double(t);
    const std::vector<float> g = test::randn<float>(n, 100 + uint64_t(t));
    for (int64_t i = 0; i < n; ++i) store.grads[i] = double(g[i]) * grad_scale;
    opt.step(store, lr, t);

    DeviceVec<float> d_gt(g);
    const float lr_c1 = float(lr / (1.0 - std::pow(cfg.beta1, double(t))));
    const float ic2 = float(1.0 / (1.0 - std::pow(cfg.beta2, double(t))));
    for (const ParamInfo& p : store.infos()) {
      const int64_t o = p.offset;
      cuda::adamw_update(d_w.get() + o, d_gt.get() + o, d_m.get() + o, d_v.get() + o,
                         d_copy.get() + o, p.shape.numel(), lr_c1, ic2, float(cfg.beta1),
                         float(cfg.beta2), float(cfg.eps),
                         p.decay ? float(lr * cfg.weight_decay) : 0.0f, grad_scale, nullptr);
    }
    sync();
  }
  const std::vector<float> w = d_w.host();
  EXPECT_LE(rel_err(as_double(d_m.host()), opt.m), kF32Tol);
  EXPECT_LE(rel_err(as_double(d_v.host()), opt.v), kF32Tol);
  EXPECT_LE(rel_err(as_double(w), store.values), kF32Tol);
  // The updates themselves (~0.1) against fp32 rounding of w (~6e-8·|w|): 1e-4.
  std::vector<double> delta(n), ref_delta(n);
  for (int64_t i = 0; i < n; ++i) {
    delta[i] = double(w[i]) - w0[i];
    ref_delta[i] = store.values[i] - w0[i];
  }
  EXPECT_LE(rel_err(delta, ref_delta), 1e-4);
  std::vector<bf16> copy_ref(n);
  for (int64_t i = 0; i < n; ++i) copy_ref[i] = __float2bfloat16(w[i]);
  EXPECT_TRUE(same_bits(d_copy.host(), copy_ref)) << "the bf16 copy is not bf16(w)";
}

TEST(CudaOpsSumSquares, MatchesCpuAndRepeats) {
  SKIP_WITHOUT_GPU();
  DeviceVec<double> partial(zeros<double>(cuda::sum_squares_scratch()));
  for (const int64_t n : {int64_t(1000003), int64_t(5), int64_t(0)}) {
    const std::vector<float> g = test::randn<float>(std::max<int64_t>(n, 1), 111);
    DeviceVec<float> d_g(g);
    double runs[2];
    for (double& out : runs) {
      DeviceVec<double> d_out(std::vector<double>{7.0});
      cuda::sum_squares(d_g.get(), n, d_out.get(), partial.get(), nullptr);
      sync();
      out = d_out.host()[0];
    }
    const double ref = sum_squares<float>(g.data(), n);
    // Both sum exact squares of floats in double, in different orders.
    EXPECT_NEAR(runs[0], ref, 1e-11 * std::max(ref, 1.0)) << "n " << n;
    EXPECT_EQ(std::memcmp(&runs[0], &runs[1], sizeof(double)), 0) << "n " << n;
  }
}

#else

TEST(CudaOps, Skipped) { GTEST_SKIP() << "built without CUDA kernels"; }

#endif

}  // namespace
}  // namespace longctx
