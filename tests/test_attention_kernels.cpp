// The attention kernels (flash over a block mask, dense) against a naive float64 reference
// written from the definition or applying a pattern's mask through BlockMask::allowed, plus
// finite differences, mask structure and determinism.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "attention/bigbird.h"
#include "attention/block_mask.h"
#include "attention/dense.h"
#include "attention/flash.h"
#include "attention/longformer.h"
#include "attention/strided.h"
#include "tests/test_util.h"

namespace longctx::attn {
namespace {

using test::randn;
using test::rel_err;
// Whether query i of (sample b, head h) sees key j.
using Allowed = std::function<bool(int64_t b, int64_t h, int64_t i, int64_t j)>;

struct Inputs {
  std::vector<double> q, k, v, dout;
};

struct Grads {
  std::vector<double> out, lse, dq, dk, dv;
};

// Drawn in float so that the float kernels see exactly the values the reference sees.
Inputs make_inputs(const AttnShape& s, uint64_t seed, double q_std = 1.0) {
  auto to_double = [](const std::vector<float>& x) {
    return std::vector<double>(x.begin(), x.end());
  };
  const int64_t nq = s.B * s.H * s.Tq * s.D, nk = s.B * s.Hkv * s.Tk * s.D;
  return {to_double(randn<float>(nq, seed, q_std)), to_double(randn<float>(nk, seed + 1)),
          to_double(randn<float>(nk, seed + 2)), to_double(randn<float>(nq, seed + 3))};
}

// out = softmax(scale · q kᵀ over allowed keys) v, and the gradient of Σ out ∘ dout, from the
// softmax Jacobian: dS_ij = P_ij (dP_ij − Σ_l P_il dP_il) with dP = dout vᵀ.
Grads reference(const AttnShape& s, const Allowed& allowed, const Inputs& in, double scale) {
  const int64_t D = s.D;
  Grads g;
  g.out.assign(in.q.size(), 0.0);
  g.dq.assign(in.q.size(), 0.0);
  g.lse.assign(s.B * s.H * s.Tq, -std::numeric_limits<double>::infinity());
  g.dk.assign(in.k.size(), 0.0);
  g.dv.assign(in.v.size(), 0.0);
  std::vector<double> sc(s.Tk), p(s.Tk), dp(s.Tk);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t qoff = (b * s.H + h) * s.Tq * D,
                    koff = (b * s.Hkv + h / (s.H / s.Hkv)) * s.Tk * D;
      for (int64_t i = 0; i < s.Tq; ++i) {
        const double* qi = &in.q[qoff + i * D];
        const double* doi = &in.dout[qoff + i * D];
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < s.Tk; ++j) {
          if (!allowed(b, h, i, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qi[d] * in.k[koff + j * D + d];
          sc[j] = scale * dot;
          mx = std::max(mx, sc[j]);
        }
        if (mx == -std::numeric_limits<double>::infinity()) continue;
        double sum = 0;
        for (int64_t j = 0; j < s.Tk; ++j)
          sum += p[j] = allowed(b, h, i, j) ? std::exp(sc[j] - mx) : 0.0;
        g.lse[(b * s.H + h) * s.Tq + i] = mx + std::log(sum);
        double pdp = 0;
        for (int64_t j = 0; j < s.Tk; ++j) {
          p[j] /= sum;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) {
            g.out[qoff + i * D + d] += p[j] * in.v[koff + j * D + d];
            dot += doi[d] * in.v[koff + j * D + d];
          }
          dp[j] = dot;
          pdp += p[j] * dot;
        }
        for (int64_t j = 0; j < s.Tk; ++j) {
          const double ds = p[j] * (dp[j] - pdp);
          for (int64_t d = 0; d < D; ++d) {
            g.dq[qoff + i * D + d] += scale * ds * in.k[koff + j * D + d];
            g.dk[koff + j * D + d] += scale * ds * qi[d];
            g.dv[koff + j * D + d] += p[j] * doi[d];
          }
        }
      }
    }
  return g;
}

Allowed rule_of(bool causal) {
  return [causal](int64_t, int64_t, int64_t i, int64_t j) { return !causal || j <= i; };
}

// The scores a mask set allows, by BlockMask::allowed (which test_masks checks against each
// pattern's definition).
Allowed allowed_by(const MaskSet& set) {
  return [&set](int64_t b, int64_t h, int64_t i, int64_t j) { return set.get(b, h).allowed(i, j); };
}

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

template <class T>
Grads run_flash(const AttnShape& s, const MaskSet& mask, const Inputs& in, double scale) {
  const auto q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v), dout = cast<T>(in.dout);
  std::vector<T> out(q.size()), lse(s.B * s.H * s.Tq), dq(q.size()), dk(k.size()), dv(v.size());
  flash_forward<T>(s, mask, q.data(), k.data(), v.data(), out.data(), lse.data(), T(scale));
  flash_backward<T>(s, mask, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(),
                    dq.data(), dk.data(), dv.data(), T(scale));
  auto d = [](const std::vector<T>& x) { return std::vector<double>(x.begin(), x.end()); };
  return {d(out), d(lse), d(dq), d(dk), d(dv)};
}

template <class T>
Grads run_flash(const AttnShape& s, const BlockMask& mask, const Inputs& in, double scale) {
  return run_flash<T>(s, MaskSet::shared(mask), in, scale);
}

template <class T>
Grads run_dense(const AttnShape& s, const MaskSet& mask, const Inputs& in, double scale) {
  const auto q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v), dout = cast<T>(in.dout);
  std::vector<T> out(q.size()), probs(s.B * s.H * s.Tq * s.Tk), dq(q.size()), dk(k.size()),
      dv(v.size());
  dense_forward<T>(s, mask, q.data(), k.data(), v.data(), out.data(), probs.data(), T(scale));
  dense_backward<T>(s, q.data(), k.data(), v.data(), probs.data(), dout.data(), dq.data(),
                    dk.data(), dv.data(), T(scale));
  auto d = [](const std::vector<T>& x) { return std::vector<double>(x.begin(), x.end()); };
  return {d(out), {}, d(dq), d(dk), d(dv)};
}

// Relative error, or the absolute one where the reference is exactly zero (a single key makes
// dq and dk vanish, and the kernels then return rounding noise).
double error(const std::vector<double>& got, const std::vector<double>& want) {
  for (double w : want)
    if (w != 0) return rel_err(got, want);
  return test::max_abs_diff(got, want);
}

void expect_close(const Grads& got, const Grads& want, double tol, bool has_lse = true) {
  EXPECT_LT(error(got.out, want.out), tol) << "out";
  if (has_lse) {
    EXPECT_LT(error(got.lse, want.lse), tol) << "lse";
  }
  EXPECT_LT(error(got.dq, want.dq), tol) << "dq";
  EXPECT_LT(error(got.dk, want.dk), tol) << "dk";
  EXPECT_LT(error(got.dv, want.dv), tol) << "dv";
}

constexpr double kTolDouble = 1e-10, kTolFloat = 1e-5;

// Flash at both block sizes and both precisions, and dense, against one reference.
void check_all_kernels(const AttnShape& s, bool causal, uint64_t seed) {
  const double scale = 1.0 / std::sqrt(double(s.D));
  const Inputs in = make_inputs(s, seed);
  const Grads want = reference(s, rule_of(causal), in, scale);
  const MaskSet dense_mask =
      MaskSet::shared(causal ? causal_mask(s.Tq, 64) : full_mask(s.Tq, s.Tk, 64));
  for (int block : {16, 64}) {
    SCOPED_TRACE(testing::Message() << "block " << block);
    const BlockMask mask = causal ? causal_mask(s.Tq, block) : full_mask(s.Tq, s.Tk, block);
    {
      SCOPED_TRACE("flash double");
      expect_close(run_flash<double>(s, mask, in, scale), want, kTolDouble);
    }
    {
      SCOPED_TRACE("flash float");
      expect_close(run_flash<float>(s, mask, in, scale), want, kTolFloat);
    }
  }
  {
    SCOPED_TRACE("dense double");
    expect_close(run_dense<double>(s, dense_mask, in, scale), want, kTolDouble, false);
  }
  {
    SCOPED_TRACE("dense float");
    expect_close(run_dense<float>(s, dense_mask, in, scale), want, kTolFloat, false);
  }
}

void check_square_lengths(bool causal) {
  uint64_t seed = causal ? 1000 : 2000;
  for (int64_t n : {1, 7, 63, 64, 65, 200})
    for (int64_t d : {16, 24, 32, 64}) {
      SCOPED_TRACE(testing::Message() << "n " << n << " head_dim " << d);
      AttnShape s;
      s.B = 2;
      s.H = s.Hkv = 3;
      s.Tq = s.Tk = n;
      s.D = d;
      check_all_kernels(s, causal, seed++);
    }
}

TEST(AttentionKernels, MatchReferenceBidirectional) { check_square_lengths(false); }

TEST(AttentionKernels, MatchReferenceCausal) { check_square_lengths(true); }

TEST(AttentionKernels, MatchReferenceQueryAndKeyLengthsDiffer) {
  uint64_t seed = 3000;
  for (auto [tq, tk] :
       {std::pair<int64_t, int64_t>{7, 65}, {65, 7}, {200, 63}, {1, 200}, {64, 1}}) {
    SCOPED_TRACE(testing::Message() << "Tq " << tq << " Tk " << tk);
    AttnShape s;
    s.B = 2;
    s.H = s.Hkv = 3;
    s.Tq = tq;
    s.Tk = tk;
    s.D = 24;
    check_all_kernels(s, false, seed++);
  }
}

// K/V heads shared by groups of query heads: dk and dv sum over the group.
TEST(AttentionKernels, MatchReferenceGroupedQueryHeads) {
  uint64_t seed = 4000;
  for (bool causal : {false, true})
    for (auto [h, hkv] : {std::pair<int64_t, int64_t>{4, 2}, {4, 1}}) {
      SCOPED_TRACE(testing::Message() << "causal " << causal << " H " << h << " Hkv " << hkv);
      AttnShape s;
      s.B = 2;
      s.H = h;
      s.Hkv = hkv;
      s.Tq = s.Tk = 65;
      s.D = 32;
      check_all_kernels(s, causal, seed++);
    }
}

// Scores of ±100 overflow a naive exp; the online softmax must stay exact.
TEST(AttentionKernels, LargeScoresStayFinite) {
  AttnShape s;
  s.B = 1;
  s.H = s.Hkv = 2;
  s.Tq = s.Tk = 100;
  s.D = 32;
  const double scale = 1.0 / std::sqrt(double(s.D));
  const Inputs in = make_inputs(s, 5000, 30.0);
  const Grads want = reference(s, rule_of(true), in, scale);
  const BlockMask mask = causal_mask(s.Tq, 16);
  expect_close(run_flash<double>(s, mask, in, scale), want, kTolDouble);
  expect_close(run_flash<float>(s, mask, in, scale), want, 1e-4);
}

// A sparse mask with partial blocks, skipped blocks and a query block with no key block at all:
// its rows get out = 0, lse = -inf and no gradient.
TEST(AttentionKernels, FlashRunsAnyBlockMask) {
  AttnShape s;
  s.B = 2;
  s.H = 2;
  s.Hkv = 1;
  s.Tq = s.Tk = 90;
  s.D = 16;
  const int block = 16;
  const BlockMask causal = causal_mask(s.Tq, block);
  BlockMask m = causal;
  m.col.clear();
  m.full.clear();
  for (int64_t qb = 0; qb < causal.n_qblocks(); ++qb) {
    m.row_ptr[qb] = int64_t(m.col.size());
    for (int64_t e = causal.row_ptr[qb]; e < causal.row_ptr[qb + 1]; ++e) {
      const int32_t kb = causal.col[e];
      if (qb == 2 || (kb % 2 == 1 && kb != qb)) continue;
      m.col.push_back(kb);
      m.full.push_back(causal.full[e]);
    }
  }
  m.row_ptr[causal.n_qblocks()] = int64_t(m.col.size());

  const double scale = 0.3;
  const Inputs in = make_inputs(s, 6000);
  const MaskSet set = MaskSet::shared(m);
  const Grads want = reference(s, allowed_by(set), in, scale);
  for (const Grads& got : {run_flash<double>(s, m, in, scale), run_flash<float>(s, m, in, scale)}) {
    EXPECT_LT(rel_err(got.out, want.out), kTolFloat);
    EXPECT_LT(rel_err(got.dq, want.dq), kTolFloat);
    EXPECT_LT(rel_err(got.dk, want.dk), kTolFloat);
    EXPECT_LT(rel_err(got.dv, want.dv), kTolFloat);
    for (size_t r = 0; r < want.lse.size(); ++r) {
      const int64_t i = int64_t(r) % s.Tq;
      if (i >= 2 * block && i < 3 * block) {
        EXPECT_EQ(got.lse[r], -std::numeric_limits<double>::infinity()) << "row " << r;
        for (int64_t d = 0; d < s.D; ++d) {
          EXPECT_EQ(got.out[r * s.D + d], 0.0);
          EXPECT_EQ(got.dq[r * s.D + d], 0.0);
        }
      } else {
        EXPECT_NEAR(got.lse[r], want.lse[r], 1e-5 * std::abs(want.lse[r]) + 1e-6) << "row " << r;
      }
    }
  }
}

// An oracle that shares nothing with the analytic gradient: central differences of
// L = Σ out ∘ G in double, on tiny GQA cases with partial blocks: causal, and strided, whose
// second part runs over a permuted order and merges into the first through the logsumexp.
TEST(AttentionKernels, FlashBackwardMatchesFiniteDifferences) {
  const std::vector<std::pair<int64_t, BlockMask>> cases{{5, causal_mask(5, 2)},
                                                         {9, strided_mask(9, 2, 3, false)},
                                                         {9, strided_mask(9, 2, 2, true)}};
  for (const auto& [n, block_mask] : cases) {
    SCOPED_TRACE(testing::Message() << "n " << n << ", " << block_mask.parts.size() << " parts");
    AttnShape s;
    s.B = 1;
    s.H = 2;
    s.Hkv = 1;
    s.Tq = s.Tk = n;
    s.D = 3;
    const MaskSet mask = MaskSet::shared(block_mask);
    const double scale = 0.7;
    Inputs in = make_inputs(s, 7000);
    const Grads got = run_flash<double>(s, mask, in, scale);

    auto loss = [&](const Inputs& x) {
      std::vector<double> out(x.q.size()), lse(s.H * s.Tq);
      flash_forward<double>(s, mask, x.q.data(), x.k.data(), x.v.data(), out.data(), lse.data(),
                            scale);
      double l = 0;
      for (size_t i = 0; i < out.size(); ++i) l += out[i] * x.dout[i];
      return l;
    };
    const double h = 1e-5;
    auto numeric = [&](std::vector<double> Inputs::*field) {
      std::vector<double> g((in.*field).size());
      for (size_t i = 0; i < g.size(); ++i) {
        const double x0 = (in.*field)[i];
        (in.*field)[i] = x0 + h;
        const double lp = loss(in);
        (in.*field)[i] = x0 - h;
        const double lm = loss(in);
        (in.*field)[i] = x0;
        g[i] = (lp - lm) / (2 * h);
      }
      return g;
    };
    EXPECT_LT(rel_err(got.dq, numeric(&Inputs::q)), 1e-8);
    EXPECT_LT(rel_err(got.dk, numeric(&Inputs::k)), 1e-8);
    EXPECT_LT(rel_err(got.dv, numeric(&Inputs::v)), 1e-8);
  }
}

// Each output element is computed by one thread in a fixed order, with reductions whose order
// does not depend on addresses, so the bits do not change between runs or with the thread
// count (the inputs are copied afresh for each run, so they sit at new addresses).
TEST(AttentionKernels, BitwiseDeterministic) {
  AttnShape s;
  s.B = 2;
  s.H = 4;
  s.Hkv = 2;
  s.Tq = s.Tk = 150;
  s.D = 32;
  const MaskSet mask = MaskSet::shared(causal_mask(s.Tq, 16));
  const Inputs in = make_inputs(s, 8000);
  const int threads = omp_get_max_threads();
  auto run = [&](int n_threads, bool flash) {
    omp_set_num_threads(n_threads);
    const Grads g = flash ? run_flash<float>(s, mask, in, 0.2) : run_dense<float>(s, mask, in, 0.2);
    omp_set_num_threads(threads);
    return g;
  };
  auto same_bits = [](const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
  };
  for (bool flash : {true, false}) {
    const Grads first = run(threads, flash);
    for (int n_threads : {threads, 1, 3}) {
      SCOPED_TRACE(testing::Message()
                   << (flash ? "flash, " : "dense, ") << n_threads << " threads");
      const Grads again = run(n_threads, flash);
      EXPECT_TRUE(same_bits(first.out, again.out));
      EXPECT_TRUE(same_bits(first.lse, again.lse));
      EXPECT_TRUE(same_bits(first.dq, again.dq));
      EXPECT_TRUE(same_bits(first.dk, again.dk));
      EXPECT_TRUE(same_bits(first.dv, again.dv));
    }
  }
}

// Each pattern's masks as its builder makes them, for one length and head count.
struct PatternCase {
  std::string name;
  MaskSet masks;
};

std::vector<PatternCase> pattern_cases(int64_t n, int64_t heads, bool causal) {
  const int block = 16;
  std::vector<int64_t> globals;
  for (int64_t p : {int64_t(0), n / 2, n - 1})
    if (std::find(globals.begin(), globals.end(), p) == globals.end()) globals.push_back(p);
  std::vector<int64_t> dilations;
  for (int64_t h = 0; h < heads; ++h) dilations.push_back(1 + h % 3);
  BigBirdSpec bb{block, 1, 1, 2, causal};
  if (n < bigbird_min_length(bb)) bb = {4, 1, 1, 1, causal};
  if (n < bigbird_min_length(bb)) bb = {1, 0, 0, 0, causal};
  std::vector<PatternCase> cases;
  cases.push_back(
      {"longformer window 20", MaskSet::shared(longformer_mask(n, block, 20, 1, globals, causal))});
  cases.push_back({"longformer dilation per head",
                   longformer_masks(n, block, 24, dilations, {n / 3}, causal)});
  cases.push_back({"strided auto", MaskSet::shared(strided_mask(n, block, stride_auto(n), causal))});
  cases.push_back({"strided 5", MaskSet::shared(strided_mask(n, block, 5, causal))});
  cases.push_back({"bigbird", bigbird_masks(n, bb.block, bb.window_blocks, bb.global_blocks,
                                            bb.random_blocks, causal, 7, 3, int(heads), -1)});
  return cases;
}

// Flash (both precisions) and dense against the float64 reference applying the same masks.
void check_masks(const AttnShape& s, const MaskSet& masks, uint64_t seed) {
  const double scale = 1.0 / std::sqrt(double(s.D));
  const Inputs in = make_inputs(s, seed);
  const Grads want = reference(s, allowed_by(masks), in, scale);
  {
    SCOPED_TRACE("flash double");
    expect_close(run_flash<double>(s, masks, in, scale), want, kTolDouble);
  }
  {
    SCOPED_TRACE("flash float");
    expect_close(run_flash<float>(s, masks, in, scale), want, kTolFloat);
  }
  {
    SCOPED_TRACE("dense double");
    expect_close(run_dense<double>(s, masks, in, scale), want, kTolDouble, false);
  }
}

// Lengths that are not multiples of the block, from one token to many blocks, with K/V heads
// shared by two query heads that each have their own mask where the pattern makes one per head.
TEST(AttentionKernels, PatternsMatchReference) {
  uint64_t seed = 9000;
  for (bool causal : {false, true})
    for (int64_t n : {1, 37, 130, 257, 700}) {
      AttnShape s;
      s.B = 1;
      s.H = 2;
      s.Hkv = 1;
      s.Tq = s.Tk = n;
      s.D = 16;
      for (const PatternCase& c : pattern_cases(n, s.H, causal)) {
        SCOPED_TRACE(testing::Message() << c.name << ", n " << n << (causal ? ", causal" : ""));
        check_masks(s, c.masks, seed++);
      }
    }
}

// Per-head masks (dilation per head, BigBird draws per head) and per-sample global tokens,
// with groups of query heads on one K/V head: dk and dv sum over heads with different masks.
TEST(AttentionKernels, PerHeadAndPerSampleMasksWithGroupedQueryHeads) {
  uint64_t seed = 9500;
  for (bool causal : {false, true}) {
    AttnShape s;
    s.B = 2;
    s.H = 4;
    s.Hkv = 2;
    s.Tq = s.Tk = 203;
    s.D = 16;
    const std::vector<int64_t> dilations{1, 2, 3, 2};
    const MaskSet per_sample = longformer_masks_per_sample(s.Tq, 16, 30, dilations,
                                                           {{0, 100}, {57, 202}}, causal);
    ASSERT_EQ(per_sample.masks.size(), size_t(s.B * s.H));
    const std::vector<std::pair<std::string, MaskSet>> sets{
        {"longformer per head", longformer_masks(s.Tq, 16, 30, dilations, {5}, causal)},
        {"longformer per sample and head", per_sample},
        {"longformer per sample", longformer_masks_per_sample(s.Tq, 16, 30, {2, 2, 2, 2},
                                                              {{0}, {150}}, causal)},
        {"bigbird", bigbird_masks(s.Tq, 16, 1, 1, 2, causal, 11, 0, int(s.H), -1)}};
    for (const auto& [name, masks] : sets) {
      SCOPED_TRACE(testing::Message() << name << (causal ? ", causal" : ""));
      check_masks(s, masks, seed++);
    }
  }
}

// Packed documents: each sample's masks restricted to its documents. The reference applies the
// unrestricted pattern and the same-document test itself.
TEST(AttentionKernels, DocumentMasksMatchReference) {
  uint64_t seed = 9700;
  for (bool causal : {false, true}) {
    AttnShape s;
    s.B = 2;
    s.H = 2;
    s.Hkv = 1;
    s.Tq = s.Tk = 203;
    s.D = 16;
    std::vector<std::vector<int32_t>> docs(2, std::vector<int32_t>(size_t(s.Tq)));
    for (int64_t p = 0; p < s.Tq; ++p) {
      docs[0][p] = int32_t(p >= 50) + int32_t(p >= 51) + int32_t(p >= 140);  // one 1-token doc
      docs[1][p] = int32_t(p / 64);
    }
    const std::vector<std::pair<std::string, MaskSet>> bases{
        {"causal or full", MaskSet::shared(causal ? causal_mask(s.Tq, 16)
                                                  : full_mask(s.Tq, s.Tq, 16))},
        {"longformer", longformer_masks(s.Tq, 16, 30, {1, 2}, {0, 100}, causal)},
        {"strided", MaskSet::shared(strided_mask(s.Tq, 16, 14, causal))},
        {"bigbird", bigbird_masks(s.Tq, 16, 1, 1, 2, causal, 11, 0, int(s.H), -1)}};
    for (const auto& [name, base] : bases) {
      SCOPED_TRACE(testing::Message() << name << (causal ? ", causal" : ""));
      std::vector<BlockMask> masks;
      for (int64_t b = 0; b < s.B; ++b) {
        auto doc = std::make_shared<const std::vector<int32_t>>(docs[b]);
        for (int64_t h = 0; h < s.H; ++h) masks.push_back(restrict_to_documents(base.get(0, h), doc));
      }
      const MaskSet set = MaskSet::per_sample_head(std::move(masks), s.H);
      const double scale = 1.0 / std::sqrt(double(s.D));
      const Inputs in = make_inputs(s, seed++);
      const Grads want = reference(
          s,
          [&](int64_t b, int64_t h, int64_t i, int64_t j) {
            return base.get(0, h).allowed(i, j) && docs[b][i] == docs[b][j];
          },
          in, scale);
      expect_close(run_flash<double>(s, set, in, scale), want, kTolDouble);
      expect_close(run_flash<float>(s, set, in, scale), want, kTolFloat);
      expect_close(run_dense<double>(s, set, in, scale), want, kTolDouble, false);
    }
  }
}

// Permuted parts merge into rows another part wrote; the bits still do not depend on the
// thread count.
TEST(AttentionKernels, SparsePatternsBitwiseDeterministic) {
  AttnShape s;
  s.B = 2;
  s.H = 4;
  s.Hkv = 2;
  s.Tq = s.Tk = 300;
  s.D = 32;
  const Inputs in = make_inputs(s, 9900);
  const int threads = omp_get_max_threads();
  for (const PatternCase& c : pattern_cases(s.Tq, s.H, true)) {
    SCOPED_TRACE(c.name);
    auto run = [&](int n_threads) {
      omp_set_num_threads(n_threads);
      const Grads g = run_flash<float>(s, c.masks, in, 0.2);
      omp_set_num_threads(threads);
      return g;
    };
    const Grads first = run(threads);
    for (int n_threads : {1, 3}) {
      const Grads again = run(n_threads);
      for (auto field : {&Grads::out, &Grads::lse, &Grads::dq, &Grads::dk, &Grads::dv})
        EXPECT_EQ(std::memcmp((first.*field).data(), (again.*field).data(),
                              (first.*field).size() * sizeof(double)),
                  0)
            << n_threads << " threads";
    }
  }
}

// The causal mask lists exactly the blocks holding some j <= i, and flags exactly those where
// every pair is allowed, checked pair by pair.
TEST(BlockMask, CausalMatchesBruteForce) {
  for (int64_t n : {1, 7, 63, 64, 65, 200})
    for (int block : {1, 16, 64}) {
      SCOPED_TRACE(testing::Message() << "n " << n << " block " << block);
      const BlockMask m = causal_mask(n, block);
      ASSERT_EQ(int64_t(m.row_ptr.size()), m.n_qblocks() + 1);
      ASSERT_EQ(m.col.size(), m.full.size());
      std::set<std::pair<int64_t, int64_t>> any, all;
      for (int64_t qb = 0; qb < m.n_qblocks(); ++qb)
        for (int64_t kb = 0; kb < m.n_kblocks(); ++kb) {
          bool some = false, every = true;
          for (int64_t i = qb * block; i < std::min(n, (qb + 1) * block); ++i)
            for (int64_t j = kb * block; j < std::min(n, (kb + 1) * block); ++j) {
              some |= j <= i;
              every &= j <= i;
            }
          if (some) any.insert({qb, kb});
          if (every) all.insert({qb, kb});
        }
      std::set<std::pair<int64_t, int64_t>> listed, full;
      for (int64_t qb = 0; qb < m.n_qblocks(); ++qb)
        for (int64_t e = m.row_ptr[qb]; e < m.row_ptr[qb + 1]; ++e) {
          if (e > m.row_ptr[qb]) {
            EXPECT_LT(m.col[e - 1], m.col[e]) << "columns ascend";
          }
          listed.insert({qb, m.col[e]});
          if (m.full[e]) full.insert({qb, m.col[e]});
        }
      EXPECT_EQ(listed, any);
      EXPECT_EQ(full, all);
      EXPECT_EQ(m.allowed_scores(), n * (n + 1) / 2);
      EXPECT_EQ(m.blocks_computed(), int64_t(any.size()));
    }
}

TEST(BlockMask, FullListsEveryBlock) {
  for (auto [nq, nk] : {std::pair<int64_t, int64_t>{1, 1}, {65, 7}, {200, 64}, {64, 129}}) {
    const BlockMask m = full_mask(nq, nk, 64);
    EXPECT_EQ(m.blocks_computed(), m.n_qblocks() * m.n_kblocks());
    for (uint8_t f : m.full) EXPECT_EQ(f, 1);
    EXPECT_EQ(m.allowed_scores(), nq * nk);
  }
}

}  // namespace
}  // namespace longctx::attn
