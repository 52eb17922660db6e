// The tensor-core flash kernels (attention/flash_tc.cuh), run under CPU emulation
// (core/kernel_emu.h), against the CPU engine in float64 (attention/flash.h) with the same
// MaskSet: forward (out, lse) and backward (dq, dk, dv), deterministic and not. Inputs are
// bf16-representable and the reference sees exactly those values; outputs start as NaN so an
// element left unwritten fails. Covers full and causal masks at lengths that are no multiple of
// 64, head sizes 64 and 128 and padded ones (40, 72, 200 — the last in two column slices), mha,
// gqa and mqa, longformer (dilation per head, global tokens), bigbird (a mask per head),
// strided (a second part in a permuted order), document masks (a mask per sample) and rows
// without any allowed key.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "attention/bigbird.h"
#include "attention/block_mask.h"
#include "attention/flash.h"
#include "attention/flash_tc.cuh"
#include "attention/longformer.h"
#include "attention/mask_plan.h"
#include "attention/strided.h"
#include "core/kernel_emu.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using attn::AttnShape;
using attn::MaskSet;
using cuda::tc::bf16;

// Tolerances, relative in norm against float64 on the same inputs. The kernels multiply exact
// bf16 inputs with fp32 accumulation; they round P (and dS) to bf16 before the second products
// and every output once to bf16, each a relative 2^-9 ≈ 2e-3 per element with independent
// signs. Measured on these cases: out ≤ 2.4e-3, dq/dk/dv ≤ 2.5e-3 (the final rounding
// dominates), lse ≤ 5e-8 (fp32 row sums); the bounds leave 2x (20x for lse). A wrong index, a
// missed mask bit or an unmerged part gives errors of order 1e-1 and more.
constexpr double kTolOut = 5e-3;
constexpr double kTolGrad = 6e-3;
constexpr double kTolLse = 1e-6;

struct EmuLaunch {
  template <class Args>
  void operator()(const char*, void (*kernel)(Args), cuda::wo::Dim3 grid, size_t smem,
                  const Args& args) const {
    cuda::emu::launch(grid, cuda::tc::kThreads, smem, [&] { kernel(args); });
  }
};

struct Case {
  std::string name;
  AttnShape s;
  MaskSet masks;
};

AttnShape shape(int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t D) {
  AttnShape s;
  s.B = B;
  s.H = H;
  s.Hkv = Hkv;
  s.Tq = s.Tk = T;
  s.D = D;
  return s;
}

// bf16 values and the same values in double.
struct Tensor {
  std::vector<bf16> h;
  std::vector<double> d;
};

Tensor random_tensor(int64_t n, uint64_t seed) {
  const std::vector<float> f = test::randn<float>(n, seed);
  Tensor t{std::vector<bf16>(f.size()), std::vector<double>(f.size())};
  for (size_t i = 0; i < f.size(); ++i) {
    t.h[i] = __float2bfloat16_rn(f[i]);
    t.d[i] = __bfloat162float(t.h[i]);
  }
  return t;
}

Tensor rounded(const std::vector<double>& x) {
  Tensor t{std::vector<bf16>(x.size()), std::vector<double>(x.size())};
  for (size_t i = 0; i < x.size(); ++i) {
    t.h[i] = __float2bfloat16_rn(float(x[i]));
    t.d[i] = __bfloat162float(t.h[i]);
  }
  return t;
}

std::vector<double> as_double(const std::vector<bf16>& x) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = __bfloat162float(x[i]);
  return out;
}

std::vector<bf16> nan_bf16(int64_t n) {
  return std::vector<bf16>(n, __float2bfloat16_rn(std::numeric_limits<float>::quiet_NaN()));
}

// The plan's host views and the launch geometry, as the GPU entry points read them from a
// DeviceMaskPlan.
struct HostPlan {
  attn::MaskPlan plan;
  std::vector<attn::PartView> views;
  cuda::tc::PlanRef ref;

  explicit HostPlan(const MaskSet& masks) : plan(attn::make_mask_plan(masks)) {
    views = plan.views(plan.ints.data(), plan.words.data());
    ref.views = views.data();
    ref.n_parts = plan.n_parts;
    ref.b_stride = plan.b_stride;
    ref.h_stride = plan.h_stride;
    for (const attn::PartView& v : views) {
      ref.max_qb = std::max(ref.max_qb, v.n_qb);
      ref.max_kb = std::max(ref.max_kb, v.n_kb);
    }
  }
};

std::vector<uint16_t> bits_of(const std::vector<bf16>& x) {
  std::vector<uint16_t> b(x.size());
  std::memcpy(b.data(), x.data(), x.size() * sizeof(bf16));
  return b;
}

// Finite lse entries relative in norm; -inf (rows without an allowed key) must match exactly.
void expect_lse_near(const std::vector<float>& ours, const std::vector<double>& ref,
                     const std::string& what) {
  std::vector<double> a, b;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isinf(ref[i])) {
      ASSERT_TRUE(std::isinf(ours[i]) && ours[i] < 0) << what << ": lse[" << i << "] = " << ours[i];
    } else {
      a.push_back(ours[i]);
      b.push_back(ref[i]);
    }
  }
  EXPECT_LE(test::rel_err(a, b), kTolLse) << what;
}

// What to run besides the forward; emulation costs about 1 ms per warp operation, so the
// atomics variant and the repeat run only where they add coverage.
struct Runs {
  bool atomics = true;  // the non-deterministic backward too
  bool repeat = false;  // the deterministic backward twice, compared bit for bit
};

void check_case(const Case& c, Runs runs = {}) {
  SCOPED_TRACE(c.name);
  const AttnShape& s = c.s;
  const int64_t nq = s.B * s.H * s.Tq * s.D, nk = s.B * s.Hkv * s.Tk * s.D;
  const Tensor q = random_tensor(nq, 11), k = random_tensor(nk, 12), v = random_tensor(nk, 13);
  const Tensor dout = random_tensor(nq, 14);
  const double scale = 1.0 / std::sqrt(double(s.D));

  std::vector<double> ref_out(nq), ref_lse(s.B * s.H * s.Tq);
  attn::flash_forward<double>(s, c.masks, q.d.data(), k.d.data(), v.d.data(), ref_out.data(),
                              ref_lse.data(), scale);
  // The backward of both runs against the reference's forward (out rounded to bf16 for the
  // kernels), so that each direction is checked on its own.
  const Tensor out_in = rounded(ref_out);
  std::vector<float> lse_in(ref_lse.begin(), ref_lse.end());
  std::vector<double> ref_dq(nq), ref_dk(nk), ref_dv(nk);
  attn::flash_backward<double>(s, c.masks, q.d.data(), k.d.data(), v.d.data(), out_in.d.data(),
                               ref_lse.data(), dout.d.data(), ref_dq.data(), ref_dk.data(),
                               ref_dv.data(), scale);

  const HostPlan plan(c.masks);
  const EmuLaunch launch;
  std::vector<bf16> out = nan_bf16(nq);
  std::vector<float> lse(ref_lse.size(), std::numeric_limits<float>::quiet_NaN());
  cuda::tc::forward(launch, s, plan.ref, q.h.data(), k.h.data(), v.h.data(), out.data(), lse.data(),
                    float(scale));
  EXPECT_LE(test::rel_err(as_double(out), ref_out), kTolOut) << "out";
  expect_lse_near(lse, ref_lse, "lse");

  struct Grads {
    std::vector<bf16> dq, dk, dv;
  };
  auto backward = [&](bool deterministic) {
    Grads g{nan_bf16(nq), nan_bf16(nk), nan_bf16(nk)};
    std::vector<float> scratch(cuda::tc::backward_scratch_floats(s),
                               std::numeric_limits<float>::quiet_NaN());
    cuda::tc::backward(launch, s, plan.ref, q.h.data(), k.h.data(), v.h.data(), out_in.h.data(),
                       lse_in.data(), dout.h.data(), g.dq.data(), g.dk.data(), g.dv.data(),
                       float(scale), deterministic, scratch.data());
    return g;
  };
  for (bool deterministic : {true, false}) {
    if (!deterministic && !runs.atomics) continue;
    SCOPED_TRACE(deterministic ? "deterministic" : "atomics");
    const Grads g = backward(deterministic);
    EXPECT_LE(test::rel_err(as_double(g.dq), ref_dq), kTolGrad) << "dq";
    EXPECT_LE(test::rel_err(as_double(g.dk), ref_dk), kTolGrad) << "dk";
    EXPECT_LE(test::rel_err(as_double(g.dv), ref_dv), kTolGrad) << "dv";
    if (deterministic && runs.repeat) {
      const Grads again = backward(true);
      EXPECT_EQ(bits_of(g.dq), bits_of(again.dq)) << "dq differs between two runs";
      EXPECT_EQ(bits_of(g.dk), bits_of(again.dk)) << "dk differs between two runs";
      EXPECT_EQ(bits_of(g.dv), bits_of(again.dv)) << "dv differs between two runs";
    }
  }
}

MaskSet causal_or_full(const AttnShape& s, bool causal) {
  return MaskSet::shared(causal ? attn::causal_mask(s.Tq, 64) : attn::full_mask(s.Tq, s.Tk, 64));
}

TEST(FlashTcEmu, HeadSchemes) {
  // Lengths that are no multiple of the 64-row tiles; mha with two samples, gqa, mqa.
  const AttnShape mha = shape(2, 1, 1, 70, 64), gqa = shape(1, 4, 2, 40, 64);
  const AttnShape mqa = shape(1, 2, 1, 70, 64);
  check_case({"mha B2 T70 causal", mha, causal_or_full(mha, true)});
  check_case({"gqa H4 Hkv2 T40 causal", gqa, causal_or_full(gqa, true)}, {true, true});
  check_case({"mqa H2 Hkv1 T70 full", mqa, causal_or_full(mqa, false)}, {false, false});
}

TEST(FlashTcEmu, HeadSizes) {
  // 128; 40 padded to 64; 200 padded to 256, whose gradients take two column slices.
  for (int64_t D : {128, 40}) {
    const AttnShape s = shape(1, 1, 1, 100, D);
    check_case({str("D", D, " causal"), s, causal_or_full(s, true)});
  }
  const AttnShape s = shape(1, 1, 1, 40, 200);
  check_case({"D200 full", s, causal_or_full(s, false)});
}

TEST(FlashTcEmu, Longformer) {
  // A dilation per head (a mask per head) and two global tokens.
  const AttnShape s = shape(1, 2, 2, 130, 64);
  check_case({"longformer causal", s, attn::longformer_masks(s.Tq, 64, 20, {1, 3}, {0, 77}, true)},
             {false, false});
}

TEST(FlashTcEmu, BigBirdPerHead) {
  // Random blocks differ per head; both heads share one kv head.
  const AttnShape s = shape(1, 2, 1, 193, 64);
  check_case({"bigbird causal", s, attn::bigbird_masks(s.Tq, 64, 1, 1, 1, true, 7, 0, 2, -1)},
             {false, false});
}

TEST(FlashTcEmu, StridedParts) {
  // A second part in an order grouped by position mod stride: merged through the logsumexp
  // forward, accumulated over parts backward.
  const AttnShape s = shape(1, 1, 1, 100, 64);
  check_case({"strided causal", s, MaskSet::shared(attn::strided_mask(s.Tq, 64, 5, true))});
}

TEST(FlashTcEmu, DocumentsPerSample) {
  const AttnShape s = shape(2, 1, 1, 100, 64);
  std::vector<attn::BlockMask> masks;
  for (int64_t b = 0; b < s.B; ++b) {
    auto doc = std::make_shared<std::vector<int32_t>>(s.Tq);
    for (int64_t i = 0; i < s.Tq; ++i) (*doc)[i] = int32_t(i / (b == 0 ? 30 : 45));
    masks.push_back(attn::restrict_to_documents(attn::causal_mask(s.Tq, 64), doc));
  }
  check_case({"documents", s, MaskSet::per_sample(std::move(masks))}, {false, false});
}

TEST(FlashTcEmu, RowsWithoutKeys) {
  // Causal without the diagonal: row 0 sees nothing (out = 0, lse = -inf, no gradient).
  const AttnShape s = shape(1, 1, 1, 70, 64);
  attn::ElementRule rule;
  rule.causal = true;
  rule.min_distance = 1;
  check_case({"no diagonal", s, MaskSet::shared(attn::mask_from_rule(s.Tq, 64, rule))},
             {false, false});
}

TEST(FlashTcEmu, RejectsUnsupportedHeadSize) {
  const AttnShape s = shape(1, 1, 1, 8, 36);
  const HostPlan plan(causal_or_full(s, true));
  alignas(16) bf16 x[8 * 36];
  alignas(16) float lse[8];
  EXPECT_THROW(cuda::tc::forward(EmuLaunch{}, s, plan.ref, x, x, x, x, lse, 1.f), Error);
}

}  // namespace
}  // namespace longctx
