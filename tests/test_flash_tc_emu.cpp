// The tensor-core flash kernels (attention/flash_tc.cuh), run under CPU emulation
// (core/kernel_emu.h), against the CPU engine in float64 with the same MaskSet
// (tests/flash_tc_cases.h): forward (out, lse) and backward (dq, dk, dv), deterministic and not.
// Covers full and causal masks at lengths that are no multiple of 64, head sizes 64 and 128 and
// padded ones (40, 72, 200 — the last in two column slices), mha, gqa and mqa, longformer
// (dilation per head, global tokens), bigbird (a mask per head), strided (a second part in a
// permuted order), document masks (a mask per sample) and rows without any allowed key.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "attention/flash_tc.cuh"
#include "attention/mask_plan.h"
#include "core/kernel_emu.h"
#include "tests/flash_tc_cases.h"

namespace longctx {
namespace {

using namespace test::flash_tc;

// Tolerances, relative in norm against float64 on the same inputs. The kernels multiply exact
// bf16 inputs with fp32 accumulation; they round P (and dS) to bf16 before the second products
// and every output once to bf16, each a relative 2^-9 ≈ 2e-3 per element with independent
// signs. Measured on these cases: out ≤ 2.4e-3, dq/dk/dv ≤ 2.5e-3 (the final rounding
// dominates), lse ≤ 5e-8 (fp32 row sums); the bounds leave 2x (20x for lse). A wrong index, a
// missed mask bit or an unmerged part gives errors of order 1e-1 and more.
constexpr Tolerances kTol{5e-3, 6e-3, 1e-6};
constexpr uint64_t kSeed = 11;

// Emulation costs about 1 ms per warp operation, so the atomics variant and the repeat run only
// where they add coverage.
constexpr Runs kForwardAndDeterministic{false, false};
constexpr Runs kAllWithRepeat{true, true};

struct EmuLaunch {
  template <class Args>
  void operator()(const char*, void (*kernel)(Args), cuda::wo::Dim3 grid, size_t smem,
                  const Args& args) const {
    cuda::emu::launch(grid, cuda::tc::kThreads, smem, [&] { kernel(args); });
  }
};

// The plan's host views and the launch geometry, as the GPU entry points read them from a
// DeviceMaskPlan.
struct HostPlan {
  attn::MaskPlan plan;
  std::vector<attn::PartView> views;
  cuda::tc::PlanRef ref;

  explicit HostPlan(const MaskSet& masks) : plan(attn::make_mask_plan(masks)) {
    views = plan.views(plan.ints.data(), plan.words.data());
    ref.views = views.data();
    ref.n_masks = plan.n_masks;
    ref.n_parts = plan.n_parts;
    ref.b_stride = plan.b_stride;
    ref.h_stride = plan.h_stride;
    ref.seq_q = plan.seq_q;
    ref.seq_k = plan.seq_k;
    ref.max_qb = plan.max_qblocks();
    ref.max_kb = plan.max_kblocks();
  }
};

// The kernels through flash_tc.cuh's orchestration, on host memory.
class EmuRunner {
 public:
  EmuRunner(const Case& c, const Problem& p) : s_(c.s), p_(p), plan_(c.masks) {}

  Forward forward() const {
    Forward f{nan_bf16(p_.nq), nan_floats(int64_t(p_.ref_lse.size()))};
    cuda::tc::forward(EmuLaunch{}, s_, plan_.ref, p_.q.h.data(), p_.k.h.data(), p_.v.h.data(),
                      f.out.data(), f.lse.data(), float(p_.scale));
    return f;
  }

  Grads backward(bool deterministic) const {
    Grads g{nan_bf16(p_.nq), nan_bf16(p_.nk), nan_bf16(p_.nk)};
    std::vector<float> scratch = nan_floats(cuda::tc::backward_scratch_floats(s_));
    cuda::tc::backward(EmuLaunch{}, s_, plan_.ref, p_.q.h.data(), p_.k.h.data(), p_.v.h.data(),
                       p_.out_in.h.data(), p_.lse_in.data(), p_.dout.h.data(), g.dq.data(),
                       g.dk.data(), g.dv.data(), float(p_.scale), deterministic, scratch.data());
    return g;
  }

 private:
  AttnShape s_;
  const Problem& p_;
  HostPlan plan_;
};

void check(const Case& c, Runs runs = {}) { check_case<EmuRunner>(c, kSeed, kTol, runs); }

TEST(FlashTcEmu, HeadSchemes) {
  // Lengths that are no multiple of the 64-row tiles; mha with two samples, gqa, mqa.
  check(dense_case(shape(2, 1, 1, 70, 64), true));
  check(dense_case(shape(1, 4, 2, 40, 64), true), kAllWithRepeat);
  check(dense_case(shape(1, 2, 1, 70, 64), false), kForwardAndDeterministic);
}

TEST(FlashTcEmu, HeadSizes) {
  // 128; 40 padded to 64; 200 padded to 256, whose gradients take two column slices.
  for (int64_t D : {128, 40}) check(dense_case(shape(1, 1, 1, 100, D), true));
  check(dense_case(shape(1, 1, 1, 40, 200), false));
}

TEST(FlashTcEmu, Longformer) {
  check(longformer_case(shape(1, 2, 2, 130, 64), 20, true), kForwardAndDeterministic);
}

TEST(FlashTcEmu, BigBirdPerHead) {
  // Both heads share one kv head.
  check(bigbird_case(shape(1, 2, 1, 193, 64), 1, true), kForwardAndDeterministic);
}

TEST(FlashTcEmu, StridedParts) { check(strided_case(shape(1, 1, 1, 100, 64), 5, true)); }

TEST(FlashTcEmu, DocumentsPerSample) {
  check(documents_case(shape(2, 1, 1, 100, 64), {30, 45}), kForwardAndDeterministic);
}

TEST(FlashTcEmu, RowsWithoutKeys) {
  check(no_diagonal_case(shape(1, 1, 1, 70, 64)), kForwardAndDeterministic);
}

TEST(FlashTcEmu, RejectsUnsupportedHeadSize) {
  const AttnShape s = shape(1, 1, 1, 8, 36);
  const HostPlan plan(causal_or_full(s, true));
  alignas(16) bf16 x[8 * 36];
  alignas(16) float lse[8];
  try {
    cuda::tc::forward(EmuLaunch{}, s, plan.ref, x, x, x, x, lse, 1.f);
    ADD_FAILURE() << "D = 36 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head size 36"), std::string::npos) << e.what();
  }
}

// A plan built for fewer heads, or another length, is refused before any kernel reads past it.
TEST(FlashTcEmu, RejectsAPlanForAnotherShape) {
  const AttnShape s = shape(1, 2, 2, 70, 64);
  alignas(16) static bf16 x[2 * 70 * 64];
  alignas(16) static float lse[2 * 70];
  const MaskSet per_head = MaskSet::per_head({attn::causal_mask(70, 64)});  // one head's mask
  const MaskSet shorter = causal_or_full(shape(1, 2, 2, 64, 64), true);
  for (const MaskSet* m : {&per_head, &shorter}) {
    const HostPlan plan(*m);
    try {
      cuda::tc::forward(EmuLaunch{}, s, plan.ref, x, x, x, x, lse, 1.f);
      ADD_FAILURE() << "a plan for another shape was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("was not built for B=1 H=2 Tq=70"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace longctx
