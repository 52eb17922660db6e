// MLA projections: backward against finite differences, forward against the definition written
// out by hand, the relative-position property of the decoupled RoPE key, and the cache size.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention/mla.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using test::expect_grad_matches;
using test::dot;
using test::randn;
using V = std::vector<double>;

// One MLA projection with its buffers, in double, for a [B, T] batch.
struct Fixture {
  int64_t C, H, D, r, R, B, Tn;
  ParamStore<double> st;
  MlaProjection<double> mla;
  Arena<double> arena;
  MlaActs<double> acts;
  MlaScratch<double> scratch;
  RopeTable<double> rope;
  V q, k, v;

  Fixture(int64_t C_, int64_t H_, int64_t r_, int64_t R_, int64_t B_, int64_t T_, uint64_t seed)
      : C(C_),
        H(H_),
        D(C_ / H_),
        r(r_),
        R(R_),
        B(B_),
        Tn(T_),
        mla(st, "blocks.0.attn", C_, H_, r_, R_),
        rope(64, R_) {
    st.allocate();
    Rng rng(seed);
    mla.init(st, rng, 0.5);
    for (int pass = 0; pass < 2; ++pass) {
      mla.layout(arena, acts, B, Tn);
      mla.layout_scratch(arena, scratch, B, Tn);
      if (pass == 0) arena.commit();
    }
    q.assign(B * H * Tn * D, 0);
    k = v = q;
  }
  void forward(const V& x, const std::vector<int64_t>* pos = nullptr) {
    mla.forward(st, x.data(), q.data(), k.data(), v.data(), acts, scratch, B, Tn, &rope,
                pos ? pos->data() : nullptr);
  }
  // Positions 3 apart from `first`: not consecutive, as a sequence-parallel rank may hold.
  std::vector<int64_t> spread(int64_t first) const {
    std::vector<int64_t> p(static_cast<size_t>(Tn));
    for (int64_t t = 0; t < Tn; ++t) p[t] = first + 3 * t;
    return p;
  }
  const double* w(int id) const { return st.values.data() + st.infos()[id].offset; }
};

TEST(Mla, BackwardMatchesFiniteDifferences) {
  Fixture f(12, 2, 5, 4, 2, 3, 1);  // D = 6: 2 nope dims and 4 rope dims per head
  const int64_t N = f.B * f.Tn, n = f.B * f.H * f.Tn * f.D;
  const std::vector<int64_t> pos = f.spread(3);  // exercises the position bookkeeping
  V x = randn<double>(N * f.C, 2), gq = randn<double>(n, 3), gk = randn<double>(n, 4),
    gv = randn<double>(n, 5), dx(N * f.C);
  auto loss = [&] {
    f.forward(x, &pos);
    return dot(f.q, gq) + dot(f.k, gk) + dot(f.v, gv);
  };
  loss();
  f.mla.backward(f.st, x.data(), gq.data(), gk.data(), gv.data(), dx.data(), f.acts, f.scratch, f.B,
                 f.Tn, &f.rope, pos.data());
  expect_grad_matches("mla dx", loss, x.data(), N * f.C, dx.data(), N * f.C);
  const V grads = f.st.grads;
  for (const ParamInfo& info : f.st.infos()) {
    const int64_t size = info.shape.numel();
    expect_grad_matches("mla " + info.name, loss, f.st.values.data() + info.offset, size,
                        grads.data() + info.offset, size);
  }
}

TEST(Mla, BackwardOverwritesDxAndAccumulatesParams) {
  Fixture f(8, 2, 3, 2, 1, 4, 6);
  const int64_t N = f.B * f.Tn, n = f.B * f.H * f.Tn * f.D;
  V x = randn<double>(N * f.C, 7), g = randn<double>(n, 8), dx(N * f.C, 1e9), dx2(N * f.C);
  f.forward(x);
  f.mla.backward(f.st, x.data(), g.data(), g.data(), g.data(), dx.data(), f.acts, f.scratch, f.B,
                 f.Tn, &f.rope, nullptr);
  const V once = f.st.grads;
  f.mla.backward(f.st, x.data(), g.data(), g.data(), g.data(), dx2.data(), f.acts, f.scratch, f.B,
                 f.Tn, &f.rope, nullptr);
  EXPECT_EQ(dx, dx2);
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(f.st.grads[i], 2 * once[i], 1e-12);
}

// k for one (b, h, t) built from the definition with explicit loops and the rotation written out.
TEST(Mla, ForwardMatchesDefinition) {
  Fixture f(12, 3, 5, 2, 2, 5, 9);  // D = 4: 2 nope, 2 rope
  const int64_t N = f.B * f.Tn, Dn = f.D - f.R;
  const std::vector<int64_t> pos = f.spread(2);
  V x = randn<double>(N * f.C, 10);
  f.forward(x, &pos);
  const double* wq = f.w(f.mla.wq());
  const double* wdkv = f.w(f.mla.w_dkv());
  const double* wuk = f.w(f.mla.w_uk());
  const double* wuv = f.w(f.mla.w_uv());
  const double* wkr = f.w(f.mla.w_kr());
  for (int64_t b : {0, 1})
    for (int64_t h : {0, 2})
      for (int64_t t : {0, 3}) {
        const double* xr = x.data() + (b * f.Tn + t) * f.C;
        V c(f.r, 0), kr(f.R, 0), kref(f.D, 0), vref(f.D, 0), qref(f.D, 0);
        for (int64_t j = 0; j < f.r; ++j)
          for (int64_t i = 0; i < f.C; ++i) c[j] += xr[i] * wdkv[i * f.r + j];
        for (int64_t d = 0; d < Dn; ++d)
          for (int64_t j = 0; j < f.r; ++j) kref[d] += c[j] * wuk[j * f.H * Dn + h * Dn + d];
        for (int64_t d = 0; d < f.R; ++d)
          for (int64_t i = 0; i < f.C; ++i) kr[d] += xr[i] * wkr[i * f.R + d];
        for (int64_t d = 0; d < f.D; ++d) {
          for (int64_t j = 0; j < f.r; ++j) vref[d] += c[j] * wuv[j * f.H * f.D + h * f.D + d];
          for (int64_t i = 0; i < f.C; ++i) qref[d] += xr[i] * wq[i * f.H * f.D + h * f.D + d];
        }
        // rope_dim = 2: one frequency, theta = 1, angle = position.
        const double a = static_cast<double>(pos[t]), cs = std::cos(a), sn = std::sin(a);
        kref[Dn] = kr[0] * cs - kr[1] * sn;
        kref[Dn + 1] = kr[1] * cs + kr[0] * sn;
        const double q0 = qref[Dn], q1 = qref[Dn + 1];
        qref[Dn] = q0 * cs - q1 * sn;
        qref[Dn + 1] = q1 * cs + q0 * sn;
        const int64_t row = ((b * f.H + h) * f.Tn + t) * f.D;
        for (int64_t d = 0; d < f.D; ++d) {
          EXPECT_NEAR(f.k[row + d], kref[d], 1e-12) << "k b" << b << " h" << h << " t" << t;
          EXPECT_NEAR(f.v[row + d], vref[d], 1e-12) << "v b" << b << " h" << h << " t" << t;
          EXPECT_NEAR(f.q[row + d], qref[d], 1e-12) << "q b" << b << " h" << h << " t" << t;
        }
        for (int64_t j = 0; j < f.r; ++j)
          EXPECT_NEAR(f.acts.latent[(b * f.Tn + t) * f.r + j], c[j], 1e-12);
      }
}

// The rope part of every head's key is one shared vector: identical across heads.
TEST(Mla, RopeKeyIsSharedByHeads) {
  Fixture f(24, 4, 6, 4, 1, 3, 11);  // D = 6
  V x = randn<double>(f.Tn * f.C, 12);
  f.forward(x);
  const int64_t Dn = f.D - f.R;
  for (int64_t h = 1; h < f.H; ++h)
    for (int64_t t = 0; t < f.Tn; ++t)
      for (int64_t d = Dn; d < f.D; ++d) EXPECT_EQ(f.k[(h * f.Tn + t) * f.D + d], f.k[t * f.D + d]);
}

// With the same token at every position, q_i·k_j can depend on positions only through RoPE,
// and RoPE makes it depend on i − j alone: the score matrix is constant along diagonals and the
// same for any start position; the nope part does not move at all.
TEST(Mla, ScoresDependOnRelativePositionOnly) {
  const int64_t Tn = 9;
  Fixture f(16, 2, 6, 4, 1, Tn, 13);
  const V token = randn<double>(f.C, 14);
  V x(Tn * f.C);
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t i = 0; i < f.C; ++i) x[t * f.C + i] = token[i];
  const int64_t Dn = f.D - f.R;
  auto score = [&](int64_t h, int64_t i, int64_t j, int64_t d0, int64_t d1) {
    double s = 0;
    for (int64_t d = d0; d < d1; ++d)
      s += f.q[(h * Tn + i) * f.D + d] * f.k[(h * Tn + j) * f.D + d];
    return s;
  };
  f.forward(x, 0);
  V at0;
  for (int64_t h = 0; h < f.H; ++h)
    for (int64_t i = 0; i < Tn; ++i)
      for (int64_t j = 0; j < Tn; ++j) at0.push_back(score(h, i, j, 0, f.D));
  for (int64_t h = 0; h < f.H; ++h) {
    for (int64_t i = 1; i < Tn; ++i)
      for (int64_t j = 1; j < Tn; ++j) {
        EXPECT_NEAR(score(h, i, j, 0, f.D), score(h, i - 1, j - 1, 0, f.D), 1e-10);
        EXPECT_NEAR(score(h, i, j, 0, Dn), score(h, 0, 0, 0, Dn), 1e-12);
      }
    // The rope part does carry position: different offsets give different scores.
    EXPECT_GT(std::abs(score(h, 4, 0, Dn, f.D) - score(h, 4, 3, Dn, f.D)), 1e-6);
  }
  std::vector<int64_t> from17(static_cast<size_t>(Tn));
  for (int64_t t = 0; t < Tn; ++t) from17[t] = 17 + t;
  f.forward(x, &from17);
  V at17;
  for (int64_t h = 0; h < f.H; ++h)
    for (int64_t i = 0; i < Tn; ++i)
      for (int64_t j = 0; j < Tn; ++j) at17.push_back(score(h, i, j, 0, f.D));
  EXPECT_LT(test::max_abs_diff(at17, at0), 1e-10);
}

TEST(Mla, KvCacheIsLatentPlusRopeKey) {
  // The DESIGN example: d_model 256, 4 heads of 64, kv_lora_rank 64, rope_dim 16.
  ParamStore<float> st;
  MlaProjection<float> mla(st, "attn", 256, 4, 64, 16);
  EXPECT_EQ(mla.kv_cache_values_per_token(), 64 + 16);
  EXPECT_EQ(mha_kv_cache_values_per_token(4, 64), 2 * 4 * 64);
  EXPECT_LT(mla.kv_cache_values_per_token() * 6, mha_kv_cache_values_per_token(4, 64));
  // And the parameters it registers, with the documented shapes.
  EXPECT_EQ(st.infos().size(), 5u);
  EXPECT_EQ(st.infos()[mla.wq()].shape, Shape({256, 256}));
  EXPECT_EQ(st.infos()[mla.w_dkv()].shape, Shape({256, 64}));
  EXPECT_EQ(st.infos()[mla.w_uk()].shape, Shape({64, 4 * 48}));
  EXPECT_EQ(st.infos()[mla.w_uv()].shape, Shape({64, 256}));
  EXPECT_EQ(st.infos()[mla.w_kr()].shape, Shape({256, 16}));
  EXPECT_EQ(st.infos()[mla.w_kr()].name, "attn.w_kr");
}

// The cache really suffices: k and v of every head are a function of the cached latent and
// roped shared key alone. Changing x but keeping those two fixed must not change k or v.
TEST(Mla, KeysAndValuesComeFromTheCachedValues) {
  Fixture f(12, 3, 5, 2, 1, 4, 15);
  V x = randn<double>(f.Tn * f.C, 16);
  f.forward(x);
  const V k0 = f.k, v0 = f.v;
  // Move x along a direction that w_dkv and w_kr both map to zero.
  const double* wdkv = f.w(f.mla.w_dkv());
  const double* wkr = f.w(f.mla.w_kr());
  std::vector<V> basis;  // rows: the r + R columns of [w_dkv | w_kr], as vectors in R^C
  for (int64_t j = 0; j < f.r; ++j) {
    V col(f.C);
    for (int64_t i = 0; i < f.C; ++i) col[i] = wdkv[i * f.r + j];
    basis.push_back(col);
  }
  for (int64_t j = 0; j < f.R; ++j) {
    V col(f.C);
    for (int64_t i = 0; i < f.C; ++i) col[i] = wkr[i * f.R + j];
    basis.push_back(col);
  }
  // Gram-Schmidt, then project a random direction off their span.
  for (size_t a = 0; a < basis.size(); ++a) {
    for (size_t b = 0; b < a; ++b) {
      const double p = dot(basis[a], basis[b]);
      for (int64_t i = 0; i < f.C; ++i) basis[a][i] -= p * basis[b][i];
    }
    const double nrm = std::sqrt(dot(basis[a], basis[a]));
    for (double& e : basis[a]) e /= nrm;
  }
  V dir = randn<double>(f.C, 17);
  for (const V& e : basis) {
    const double p = dot(dir, e);
    for (int64_t i = 0; i < f.C; ++i) dir[i] -= p * e[i];
  }
  for (int64_t t = 0; t < f.Tn; ++t)
    for (int64_t i = 0; i < f.C; ++i) x[t * f.C + i] += 3.0 * dir[i];
  const V q0 = f.q;
  f.forward(x);
  EXPECT_LT(test::max_abs_diff(f.k, k0), 1e-12);
  EXPECT_LT(test::max_abs_diff(f.v, v0), 1e-12);
  EXPECT_GT(test::max_abs_diff(f.q, q0), 1e-3);  // x did change
}

TEST(Mla, RejectsBadRopeDim) {
  ParamStore<double> st;
  EXPECT_THROW(MlaProjection<double>(st, "a", 16, 2, 4, 3), Error);  // odd
  EXPECT_THROW(MlaProjection<double>(st, "b", 16, 2, 4, 8), Error);  // = head_dim
  EXPECT_THROW(MlaProjection<double>(st, "c", 16, 3, 4, 2), Error);  // 3 ∤ 16
}

TEST(Mla, FloatMatchesDouble) {
  const int64_t C = 16, H = 2, r = 6, R = 4, B = 2, Tn = 5, N = B * Tn, n = B * H * Tn * (C / H);
  ParamStore<double> sd;
  ParamStore<float> sf;
  MlaProjection<double> md(sd, "attn", C, H, r, R);
  MlaProjection<float> mf(sf, "attn", C, H, r, R);
  sd.allocate();
  sf.allocate();
  Rng rng(18);
  md.init(sd, rng, 0.3);
  for (int64_t i = 0; i < sd.size(); ++i) sf.values[i] = static_cast<float>(sd.values[i]);
  Arena<double> ad;
  Arena<float> af;
  MlaActs<double> actd;
  MlaActs<float> actf;
  MlaScratch<double> scd;
  MlaScratch<float> scf;
  for (int pass = 0; pass < 2; ++pass) {
    md.layout(ad, actd, B, Tn);
    md.layout_scratch(ad, scd, B, Tn);
    mf.layout(af, actf, B, Tn);
    mf.layout_scratch(af, scf, B, Tn);
    if (pass == 0) {
      ad.commit();
      af.commit();
    }
  }
  RopeTable<double> rd(16, R);
  RopeTable<float> rf(16, R);
  const V x = randn<double>(N * C, 19), g = randn<double>(n, 20);
  std::vector<float> xf(x.begin(), x.end()), gf(g.begin(), g.end());
  V q(n), k(n), v(n), dx(N * C);
  std::vector<float> qf(n), kf(n), vf(n), dxf(N * C);
  md.forward(sd, x.data(), q.data(), k.data(), v.data(), actd, scd, B, Tn, &rd, nullptr);
  mf.forward(sf, xf.data(), qf.data(), kf.data(), vf.data(), actf, scf, B, Tn, &rf, nullptr);
  md.backward(sd, x.data(), g.data(), g.data(), g.data(), dx.data(), actd, scd, B, Tn, &rd, nullptr);
  mf.backward(sf, xf.data(), gf.data(), gf.data(), gf.data(), dxf.data(), actf, scf, B, Tn, &rf, nullptr);
  EXPECT_LT(test::rel_err(qf, q), 1e-5);
  EXPECT_LT(test::rel_err(kf, k), 1e-5);
  EXPECT_LT(test::rel_err(vf, v), 1e-5);
  EXPECT_LT(test::rel_err(dxf, dx), 1e-5);
  EXPECT_LT(test::rel_err(sf.grads, sd.grads), 1e-5);
}

}  // namespace
}  // namespace longctx
