// Linformer sequence projections: forward against the triple loop of the definition, backward
// against finite differences, the first-n-columns rule, slices for sequence parallelism, and
// the parameters each sharing mode registers.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention/linformer.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using test::expect_grad_matches;
using test::dot;
using test::randn;
using V = std::vector<double>;

TEST(Linformer, ForwardMatchesDefinition) {
  const int64_t B = 2, H = 3, D = 5, L = 11, k = 4;
  for (int64_t n : {L, int64_t(7), int64_t(1)}) {
    const V E = randn<double>(k * L, 1), X = randn<double>(B * H * n * D, 2);
    V Xp(B * H * k * D, 1e9);
    linformer_project_forward(E.data(), L, k, n, X.data(), Xp.data(), B, H, D);
    for (int64_t bh = 0; bh < B * H; ++bh)
      for (int64_t i = 0; i < k; ++i)
        for (int64_t d = 0; d < D; ++d) {
          double s = 0;
          for (int64_t j = 0; j < n; ++j) s += E[i * L + j] * X[(bh * n + j) * D + d];
          EXPECT_NEAR(Xp[(bh * k + i) * D + d], s, 1e-12) << "n " << n;
        }
  }
}

TEST(Linformer, BackwardMatchesFiniteDifferences) {
  const int64_t B = 2, H = 2, D = 3, L = 9, k = 4, n = 6;
  V E = randn<double>(k * L, 3), X = randn<double>(B * H * n * D, 4),
    g = randn<double>(B * H * k * D, 5), Xp(B * H * k * D), dX(B * H * n * D, 1e9), dE(k * L, 0);
  auto loss = [&] {
    linformer_project_forward(E.data(), L, k, n, X.data(), Xp.data(), B, H, D);
    return dot(Xp, g);
  };
  linformer_project_backward(E.data(), L, k, n, X.data(), g.data(), dX.data(), dE.data(), B, H, D);
  expect_grad_matches("dX", loss, X.data(), X.size(), dX.data(), X.size());
  expect_grad_matches("dE", loss, E.data(), E.size(), dE.data(), E.size());
}

// Columns ≥ n never enter the forward, so their gradient must stay exactly zero, and dE must
// accumulate (the caller zeroes gradients once per step; K and V may share one E).
TEST(Linformer, ShortInputUsesFirstColumnsOnly) {
  const int64_t B = 1, H = 2, D = 4, L = 10, k = 3, n = 6;
  V E = randn<double>(k * L, 6), X = randn<double>(B * H * n * D, 7),
    g = randn<double>(B * H * k * D, 8), dX(B * H * n * D), dE(k * L, 0), Xp(B * H * k * D);
  linformer_project_forward(E.data(), L, k, n, X.data(), Xp.data(), B, H, D);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = n; j < L; ++j) E[i * L + j] = 1e6;  // changing unused columns changes nothing
  V Xp2(Xp.size());
  linformer_project_forward(E.data(), L, k, n, X.data(), Xp2.data(), B, H, D);
  EXPECT_EQ(Xp, Xp2);
  linformer_project_backward(E.data(), L, k, n, X.data(), g.data(), dX.data(), dE.data(), B, H, D);
  const V once = dE;
  linformer_project_backward(E.data(), L, k, n, X.data(), g.data(), dX.data(), dE.data(), B, H, D);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < L; ++j) {
      if (j >= n)
        EXPECT_EQ(dE[i * L + j], 0.0) << "dE[" << i << ", " << j << "]";
      else
        EXPECT_NEAR(dE[i * L + j], 2 * once[i * L + j], 1e-12);
    }
  for (int64_t i = 0; i < k; ++i) EXPECT_NE(once[i * L], 0.0);
}

// Sequence parallelism: each rank projects its slice with E offset to the slice's first column;
// the sum of the slices' projections is the whole projection, and the slices' dE fill disjoint
// columns of the whole dE.
TEST(Linformer, SlicesSumToTheWholeProjection) {
  const int64_t B = 2, H = 1, D = 3, L = 12, k = 4, n = 10, s0 = 4;
  const V E = randn<double>(k * L, 9), X = randn<double>(B * H * n * D, 10),
          g = randn<double>(B * H * k * D, 11);
  V whole(B * H * k * D), dX(B * H * n * D), dE(k * L, 0);
  linformer_project_forward(E.data(), L, k, n, X.data(), whole.data(), B, H, D);
  linformer_project_backward(E.data(), L, k, n, X.data(), g.data(), dX.data(), dE.data(), B, H, D);
  // Slices [0, s0) and [s0, n) of every (b, h), each contiguous.
  V Xa, Xb;
  for (int64_t bh = 0; bh < B * H; ++bh) {
    Xa.insert(Xa.end(), X.begin() + bh * n * D, X.begin() + (bh * n + s0) * D);
    Xb.insert(Xb.end(), X.begin() + (bh * n + s0) * D, X.begin() + (bh + 1) * n * D);
  }
  V pa(whole.size()), pb(whole.size()), dXa(Xa.size()), dXb(Xb.size()), dEs(k * L, 0);
  linformer_project_forward(E.data(), L, k, s0, Xa.data(), pa.data(), B, H, D);
  linformer_project_forward(E.data() + s0, L, k, n - s0, Xb.data(), pb.data(), B, H, D);
  for (size_t i = 0; i < whole.size(); ++i) EXPECT_NEAR(pa[i] + pb[i], whole[i], 1e-12);
  linformer_project_backward(E.data(), L, k, s0, Xa.data(), g.data(), dXa.data(), dEs.data(), B, H,
                             D);
  linformer_project_backward(E.data() + s0, L, k, n - s0, Xb.data(), g.data(), dXb.data(),
                             dEs.data() + s0, B, H, D);
  EXPECT_LT(test::max_abs_diff(dEs, dE), 1e-12);
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t d = 0; d < D; ++d) {
        const double got =
            j < s0 ? dXa[(bh * s0 + j) * D + d] : dXb[(bh * (n - s0) + j - s0) * D + d];
        EXPECT_NEAR(got, dX[(bh * n + j) * D + d], 1e-12);
      }
}

TEST(Linformer, BackwardIsDeterministic) {
  const int64_t B = 3, H = 4, D = 8, L = 64, k = 16, n = 50;
  const std::vector<float> E = randn<float>(k * L, 12), X = randn<float>(B * H * n * D, 13),
                           g = randn<float>(B * H * k * D, 14);
  std::vector<float> dX(X.size()), dE1(k * L, 0), dE2(k * L, 0);
  linformer_project_backward(E.data(), L, k, n, X.data(), g.data(), dX.data(), dE1.data(), B, H, D);
  linformer_project_backward(E.data(), L, k, n, X.data(), g.data(), dX.data(), dE2.data(), B, H, D);
  EXPECT_EQ(dE1, dE2);
}

TEST(Linformer, SharingModesRegisterTheRightParameters) {
  const int64_t k = 8, L = 32;
  {
    ParamStore<double> st;
    const LinformerParams a = linformer_add(st, "blocks.0.attn", LinformerShare::headwise, k, L);
    const LinformerParams b = linformer_add(st, "blocks.1.attn", LinformerShare::headwise, k, L);
    EXPECT_EQ(st.infos().size(), 4u);
    EXPECT_NE(a.e, a.f);
    EXPECT_NE(a.e, b.e);
    EXPECT_EQ(st.infos()[a.e].name, "blocks.0.attn.linformer_E");
    EXPECT_EQ(st.infos()[a.f].name, "blocks.0.attn.linformer_F");
    EXPECT_EQ(st.infos()[b.f].shape, Shape({k, L}));
    EXPECT_TRUE(a.owned);
  }
  {
    ParamStore<double> st;
    const LinformerParams a = linformer_add(st, "blocks.0.attn", LinformerShare::kv, k, L);
    const LinformerParams b = linformer_add(st, "blocks.1.attn", LinformerShare::kv, k, L);
    EXPECT_EQ(st.infos().size(), 2u);
    EXPECT_EQ(a.e, a.f);
    EXPECT_NE(a.e, b.e);
    EXPECT_TRUE(a.owned);
  }
  {
    ParamStore<double> st;
    const LinformerParams g = linformer_add_global(st, k, L);
    const LinformerParams a =
        linformer_add(st, "blocks.0.attn", LinformerShare::layerwise, k, L, g.e);
    const LinformerParams b =
        linformer_add(st, "blocks.1.attn", LinformerShare::layerwise, k, L, g.e);
    EXPECT_EQ(st.infos().size(), 1u);
    EXPECT_EQ(st.infos()[g.e].name, "linformer.E");
    EXPECT_TRUE(a.e == g.e && a.f == g.e && b.e == g.e && b.f == g.e);
    EXPECT_FALSE(a.owned);
    EXPECT_TRUE(g.owned);
    EXPECT_THROW(linformer_add(st, "blocks.2.attn", LinformerShare::layerwise, k, L), Error);
    EXPECT_THROW(linformer_add(st, "blocks.2.attn", LinformerShare::layerwise, k, L + 1, g.e),
                 Error);
  }
}

TEST(Linformer, InitTouchesOwnedMatricesWithTheRequestedStd) {
  const int64_t k = 64, L = 512;
  ParamStore<double> st;
  const LinformerParams g = linformer_add_global(st, k, L);
  const LinformerParams layer =
      linformer_add(st, "blocks.0.attn", LinformerShare::layerwise, k, L, g.e);
  const LinformerParams hw = linformer_add(st, "blocks.1.attn", LinformerShare::headwise, k, L);
  st.allocate();
  Rng rng(15);
  linformer_init(st, layer, rng, 1.0);  // not owned: leaves the global E alone
  for (int64_t i = 0; i < k * L; ++i) ASSERT_EQ(st.value(g.e)[i], 0.0);
  const double std = linformer_default_std(k, L);
  EXPECT_NEAR(std, 1.0 / std::sqrt(576.0), 1e-15);
  linformer_init(st, hw, rng, std);
  for (int id : {hw.e, hw.f}) {
    double ss = 0;
    for (int64_t i = 0; i < k * L; ++i) ss += st.value(id)[i] * st.value(id)[i];
    EXPECT_NEAR(std::sqrt(ss / (k * L)), std, 0.02 * std);
  }
  EXPECT_NE(st.value(hw.e)[0], st.value(hw.f)[0]);
}

TEST(Linformer, RejectsTooLongInput) {
  const V E(4 * 8, 0.0), X(9 * 2, 0.0);
  V Xp(4 * 2);
  EXPECT_THROW(linformer_project_forward(E.data(), 8, 4, 9, X.data(), Xp.data(), 1, 1, 2), Error);
}

}  // namespace
}  // namespace longctx
