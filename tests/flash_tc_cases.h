// What the tensor-core flash tests share (tests/test_flash_tc_emu.cpp under CPU emulation,
// tests/test_cuda_flash_tc.cpp on a GPU): the masks of the cases, bf16-representable inputs
// whose exact values the float64 CPU engine (attention/flash.h) sees with the same MaskSet, and
// the comparison of out, lse, dq, dk, dv against it. Each test supplies a runner of the kernels
// and its own sizes and tolerances. Outputs start as NaN so an element left unwritten fails.
#pragma once
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attention/bigbird.h"
#include "attention/block_mask.h"
#include "attention/flash.h"
#include "attention/longformer.h"
#include "attention/mask_plan.h"
#include "attention/strided.h"
#include "core/error.h"
#include "tests/test_util.h"

namespace longctx::test::flash_tc {

using attn::AttnShape;
using attn::MaskSet;
using bf16 = __nv_bfloat16;

struct Case {
  std::string name;
  AttnShape s;
  MaskSet masks;
};

inline AttnShape shape(int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t D) {
  AttnShape s;
  s.B = B;
  s.H = H;
  s.Hkv = Hkv;
  s.Tq = s.Tk = T;
  s.D = D;
  return s;
}

// ---- Cases ----

inline MaskSet causal_or_full(const AttnShape& s, bool causal) {
  return MaskSet::shared(causal ? attn::causal_mask(s.Tq, 64) : attn::full_mask(s.Tq, s.Tk, 64));
}

inline Case dense_case(const AttnShape& s, bool causal) {
  return {
      str("B", s.B, " H", s.H, " Hkv", s.Hkv, " T", s.Tq, " D", s.D, causal ? " causal" : " full"),
      s, causal_or_full(s, causal)};
}

// Dilations 1 and 3 (a mask per head: s.H = 2) and global tokens 0 and 77.
inline Case longformer_case(const AttnShape& s, int64_t window, bool causal) {
  return {str("longformer T", s.Tq, causal ? " causal" : ""), s,
          attn::longformer_masks(s.Tq, 64, window, {1, 3}, {0, 77}, causal)};
}

// Random blocks differ per head.
inline Case bigbird_case(const AttnShape& s, int64_t random_blocks, bool causal) {
  return {str("bigbird T", s.Tq, causal ? " causal" : ""), s,
          attn::bigbird_masks(s.Tq, 64, 1, 1, random_blocks, causal, 7, 0, int(s.H), -1)};
}

// A second part in an order grouped by position mod stride: merged through the logsumexp
// forward, accumulated over parts backward.
inline Case strided_case(const AttnShape& s, int64_t stride, bool causal) {
  return {str("strided T", s.Tq, " stride ", stride, causal ? " causal" : ""), s,
          MaskSet::shared(attn::strided_mask(s.Tq, 64, stride, causal))};
}

// Causal within documents of doc_len[b] tokens in sample b (a mask per sample).
inline Case documents_case(const AttnShape& s, const std::vector<int64_t>& doc_len) {
  LONGCTX_CHECK(int64_t(doc_len.size()) == s.B, "documents_case: ", doc_len.size(),
                " document lengths for B=", s.B, "; expected one per sample");
  std::vector<attn::BlockMask> masks;
  for (int64_t b = 0; b < s.B; ++b) {
    auto doc = std::make_shared<std::vector<int32_t>>(s.Tq);
    for (int64_t i = 0; i < s.Tq; ++i) (*doc)[i] = int32_t(i / doc_len[b]);
    masks.push_back(attn::restrict_to_documents(attn::causal_mask(s.Tq, 64), doc));
  }
  return {"documents", s, MaskSet::per_sample(std::move(masks))};
}

// Causal without the diagonal: row 0 sees nothing (out = 0, lse = -inf, no gradient).
inline Case no_diagonal_case(const AttnShape& s) {
  attn::ElementRule rule;
  rule.causal = true;
  rule.min_distance = 1;
  return {"no diagonal", s, MaskSet::shared(attn::mask_from_rule(s.Tq, 64, rule))};
}

// ---- Inputs and the float64 reference ----

// bf16 values and the same values in double.
struct Tensor {
  std::vector<bf16> h;
  std::vector<double> d;
};

inline Tensor rounded(const std::vector<double>& x) {
  Tensor t{std::vector<bf16>(x.size()), std::vector<double>(x.size())};
  for (size_t i = 0; i < x.size(); ++i) {
    t.h[i] = __float2bfloat16_rn(float(x[i]));
    t.d[i] = __bfloat162float(t.h[i]);
  }
  return t;
}

inline std::vector<double> as_double(const std::vector<bf16>& x) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = __bfloat162float(x[i]);
  return out;
}

inline std::vector<bf16> nan_bf16(int64_t n) {
  return std::vector<bf16>(n, __float2bfloat16_rn(std::numeric_limits<float>::quiet_NaN()));
}

inline std::vector<float> nan_floats(int64_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

inline bool same_bits(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

// One case's inputs (q, k, v, dout from seeds seed .. seed + 3) and the CPU engine's results.
// The backward runs against the reference's forward (out rounded to bf16 for the kernels), so
// that each direction is checked on its own.
struct Problem {
  int64_t nq = 0, nk = 0;  // elements of q and of k
  double scale = 1;
  Tensor q, k, v, dout, out_in;
  std::vector<float> lse_in;
  std::vector<double> ref_out, ref_lse, ref_dq, ref_dk, ref_dv;

  Problem(const Case& c, uint64_t seed) {
    const AttnShape& s = c.s;
    nq = s.B * s.H * s.Tq * s.D;
    nk = s.B * s.Hkv * s.Tk * s.D;
    scale = 1.0 / std::sqrt(double(s.D));
    q = rounded(test::randn<double>(nq, seed));
    k = rounded(test::randn<double>(nk, seed + 1));
    v = rounded(test::randn<double>(nk, seed + 2));
    dout = rounded(test::randn<double>(nq, seed + 3));
    ref_out.resize(nq);
    ref_lse.resize(s.B * s.H * s.Tq);
    attn::flash_forward<double>(s, c.masks, q.d.data(), k.d.data(), v.d.data(), ref_out.data(),
                                ref_lse.data(), scale);
    out_in = rounded(ref_out);
    lse_in.assign(ref_lse.begin(), ref_lse.end());
    ref_dq.resize(nq);
    ref_dk.resize(nk);
    ref_dv.resize(nk);
    attn::flash_backward<double>(s, c.masks, q.d.data(), k.d.data(), v.d.data(), out_in.d.data(),
                                 ref_lse.data(), dout.d.data(), ref_dq.data(), ref_dk.data(),
                                 ref_dv.data(), scale);
  }
};

// ---- The comparison ----

// Relative in norm against the float64 reference.
struct Tolerances {
  double out, grad, lse;
};

// What to run besides the forward.
struct Runs {
  bool atomics = true;  // the non-deterministic backward too
  bool repeat = false;  // the deterministic backward twice, compared bit for bit
};

struct Forward {
  std::vector<bf16> out;
  std::vector<float> lse;
};

struct Grads {
  std::vector<bf16> dq, dk, dv;
};

// Finite lse entries relative in norm; -inf (rows without an allowed key) must match exactly.
inline void expect_lse_near(const std::vector<float>& ours, const std::vector<double>& ref,
                            double tol) {
  std::vector<double> a, b;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isinf(ref[i])) {
      ASSERT_TRUE(std::isinf(ours[i]) && ours[i] < 0) << "lse[" << i << "] = " << ours[i];
    } else {
      a.push_back(ours[i]);
      b.push_back(ref[i]);
    }
  }
  EXPECT_LE(test::rel_err(a, b), tol) << "lse";
}

// Runs case c through a Runner constructed as Runner(c, problem), whose forward() returns a
// Forward and backward(deterministic) the Grads, and compares them with the reference.
template <class Runner>
void check_case(const Case& c, uint64_t seed, const Tolerances& tol, Runs runs) {
  SCOPED_TRACE(c.name);
  const Problem p(c, seed);
  Runner run(c, p);
  const Forward f = run.forward();
  EXPECT_LE(test::rel_err(as_double(f.out), p.ref_out), tol.out) << "out";
  expect_lse_near(f.lse, p.ref_lse, tol.lse);

  for (bool deterministic : {true, false}) {
    if (!deterministic && !runs.atomics) continue;
    SCOPED_TRACE(deterministic ? "deterministic" : "atomics");
    const Grads g = run.backward(deterministic);
    EXPECT_LE(test::rel_err(as_double(g.dq), p.ref_dq), tol.grad) << "dq";
    EXPECT_LE(test::rel_err(as_double(g.dk), p.ref_dk), tol.grad) << "dk";
    EXPECT_LE(test::rel_err(as_double(g.dv), p.ref_dv), tol.grad) << "dv";
    if (deterministic && runs.repeat) {
      const Grads again = run.backward(true);
      EXPECT_TRUE(same_bits(g.dq, again.dq)) << "dq differs between two runs";
      EXPECT_TRUE(same_bits(g.dk, again.dk)) << "dk differs between two runs";
      EXPECT_TRUE(same_bits(g.dv, again.dv)) << "dv differs between two runs";
    }
  }
}

}  // namespace longctx::test::flash_tc
