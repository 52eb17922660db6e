// The mask plan against the CPU engine it is built from, for every pattern: the scores its
// parts allow (through their rows, full flags and bitmasks) are exactly BlockMask::allowed's,
// each by one part; the key lists are the transpose of the query lists; and attention computed
// from the plan alone (tests/plan_reference.h, what the GPU kernels compute) equals the CPU
// flash kernel in float64, forward and backward.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "attention/bigbird.h"
#include "attention/block_mask.h"
#include "attention/flash.h"
#include "attention/longformer.h"
#include "attention/mask_plan.h"
#include "attention/strided.h"
#include "core/error.h"
#include "core/rng.h"
#include "tests/plan_reference.h"
#include "tests/test_util.h"

namespace longctx::attn {
namespace {

constexpr int kB = 2, kH = 4;  // the reference test's batch and heads; sets cover both

struct Case {
  std::string name;
  MaskSet masks;
};

// Document ids along n positions: a new document at n / 3 (inside a block for the lengths
// used here) and elsewhere at random, some only a few positions long.
std::shared_ptr<const std::vector<int32_t>> docs(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> d(static_cast<size_t>(n), 0);
  for (int64_t p = 1; p < n; ++p) d[p] = d[p - 1] + (p == n / 3 || rng.below(40) == 0);
  return std::make_shared<const std::vector<int32_t>>(std::move(d));
}

// Every pattern, at lengths that are and are not multiples of 64, one mask per set or one per
// head, sample or both.
const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    std::vector<Case> c;
    auto shared = [&](std::string name, BlockMask m) {
      c.push_back({std::move(name), MaskSet::shared(std::move(m))});
    };
    shared("full 200", full_mask(200, 200, 64));
    shared("full 128 x 192", full_mask(128, 192, 64));
    shared("causal 333", causal_mask(333, 64));
    shared("causal 256", causal_mask(256, 64));
    c.push_back({"longformer dilations per head 333",
                 longformer_masks(333, 64, 40, {1, 2, 3, 1}, {0, 150, 332}, false)});
    shared("longformer causal dilation 2 globals 333",
           longformer_mask(333, 64, 30, 2, {5, 200}, true));
    shared("longformer 256", longformer_mask(256, 64, 64, 1, {}, false));
    c.push_back({"bigbird 450", bigbird_masks(450, 64, 1, 1, 2, false, 11, 0, kH, -1)});
    c.push_back({"bigbird causal 333", bigbird_masks(333, 64, 1, 1, 2, true, 12, 1, kH, -1)});
    shared("strided causal 333", strided_mask(333, 64, stride_auto(333), true));
    shared("strided 256", strided_mask(256, 64, 16, false));
    shared("strided 200 stride 7", strided_mask(200, 64, 7, false));
    c.push_back({"strided and causal per sample 333 (part 1 missing)",
                 MaskSet::per_sample({strided_mask(333, 64, 18, false), causal_mask(333, 64)})});
    const auto doc_a = docs(333, 1), doc_b = docs(333, 2);
    c.push_back({"documents per sample causal 333",
                 MaskSet::per_sample({restrict_to_documents(causal_mask(333, 64), doc_a),
                                      restrict_to_documents(causal_mask(333, 64), doc_b)})});
    shared("documents longformer 333",
           restrict_to_documents(longformer_mask(333, 64, 40, 2, {0, 100}, false), doc_a));
    shared("documents strided causal 333",
           restrict_to_documents(strided_mask(333, 64, 18, true), doc_b));
    std::vector<BlockMask> bb_docs;
    for (const auto& d : {doc_a, doc_b})
      for (int h = 0; h < kH; ++h)
        bb_docs.push_back(
            restrict_to_documents(bigbird_mask(333, {64, 1, 1, 1, false}, 5, 0, h, -1), d));
    c.push_back({"documents bigbird per sample and head 333",
                 MaskSet::per_sample_head(std::move(bb_docs), kH)});
    std::vector<int64_t> rows;
    for (int64_t p = 1; p < 333; p += 4) rows.push_back(p);
    shared("rows causal 84 x 333", rows_mask(rows, 333, 64, true));
    shared("rows 5 x 333", rows_mask({0, 3, 64, 200, 332}, 333, 64, false));
    shared("rows documents 84 x 333", restrict_to_documents(rows_mask(rows, 333, 64, true), doc_a));
    const HeldPositions q = HeldPositions::of({{0, 100}, {200, 333}});
    const HeldPositions k = HeldPositions::of({{50, 260}});
    const HeldPositions aligned_q = HeldPositions::of({{128, 256}});
    const HeldPositions aligned_k = HeldPositions::of({{0, 192}});
    shared("restricted causal", restrict_to_positions(causal_mask(333, 64), q, k));
    shared("restricted longformer",
           restrict_to_positions(longformer_mask(333, 64, 70, 3, {10, 300}, false), q, k));
    shared("restricted strided", restrict_to_positions(strided_mask(333, 64, 18, true), q, k));
    shared("restricted strided reversed",
           restrict_to_positions(strided_mask(333, 64, 18, false), k, q));
    shared("restricted causal aligned",
           restrict_to_positions(causal_mask(333, 64), aligned_q, aligned_k));
    c.push_back({"restricted documents per sample",
                 MaskSet::per_sample({restrict_to_documents(causal_mask(333, 64), doc_a),
                                      restrict_to_documents(causal_mask(333, 64), doc_b)})
                     .restricted(q, k)});
    return c;
  }();
  return all;
}

// The row of index x of a part (x itself without an order).
int64_t row(const int32_t* rows, int64_t x) { return rows ? rows[x] : x; }

// Each part's lists mirror the mask's, and the scores the parts allow are exactly
// BlockMask::allowed's over every (query row, key row), no score allowed by two parts and no
// bit set outside the part's indices or on padding.
TEST(MaskPlan, AllowsExactlyTheEnginesScores) {
  for (const Case& cs : cases()) {
    SCOPED_TRACE(cs.name);
    const MaskPlan plan = make_mask_plan(cs.masks);
    const std::vector<PartView> views = plan.views(plan.ints.data(), plan.words.data());
    ASSERT_EQ(plan.n_masks, int64_t(cs.masks.masks.size()));
    ASSERT_EQ(int64_t(views.size()), plan.n_masks * plan.n_parts);
    EXPECT_EQ(plan.b_stride, cs.masks.b_stride);
    EXPECT_EQ(plan.h_stride, cs.masks.h_stride);
    for (int64_t mi = 0; mi < plan.n_masks; ++mi) {
      const BlockMask& mask = cs.masks.masks[mi];
      const int64_t Tq = mask.seq_q(), Tk = mask.seq_k();
      std::vector<uint8_t> got(static_cast<size_t>(Tq * Tk), 0);
      for (int64_t p = 0; p < plan.n_parts; ++p) {
        SCOPED_TRACE(testing::Message() << "mask " << mi << " part " << p);
        const PartView& v = views[mi * plan.n_parts + p];
        if (p > int64_t(mask.parts.size())) {
          EXPECT_EQ(v.n_q, 0) << "a missing part is empty";
          EXPECT_EQ(v.q_ptr, nullptr);
          continue;
        }
        const BlockMask& m = p == 0 ? mask : mask.parts[p - 1];
        ASSERT_EQ(v.n_q, m.n_q);
        ASSERT_EQ(v.n_k, m.n_k);
        ASSERT_EQ(v.n_qb, m.n_qblocks());
        ASSERT_EQ(v.n_kb, m.n_kblocks());
        ASSERT_EQ(v.q_rows != nullptr, m.order != nullptr);
        ASSERT_EQ(v.k_rows != nullptr, m.order != nullptr);
        for (int64_t x = 0; v.q_rows && x < m.n_q; ++x) ASSERT_EQ(v.q_rows[x], m.position(x));
        for (int64_t y = 0; v.k_rows && y < m.n_k; ++y) ASSERT_EQ(v.k_rows[y], m.key_position(y));
        for (int64_t qb = 0; qb <= m.n_qblocks(); ++qb) ASSERT_EQ(v.q_ptr[qb], m.row_ptr[qb]);
        for (size_t e = 0; e < m.col.size(); ++e) {
          ASSERT_EQ(v.q_col[e], m.col[e]);
          ASSERT_EQ(v.q_bits[e] < 0, bool(m.full[e])) << "entry " << e;
        }
        for (int64_t qb = 0; qb < v.n_qb; ++qb)
          for (int64_t e = v.q_ptr[qb]; e < v.q_ptr[qb + 1]; ++e) {
            const int64_t kb = v.q_col[e];
            for (int64_t r = 0; r < kPlanBlock; ++r) {
              const int64_t x = qb * kPlanBlock + r;
              const uint64_t word =
                  v.q_bits[e] < 0 ? ~uint64_t(0) : v.bits[kPlanBlock * v.q_bits[e] + r];
              for (int64_t c = 0; c < kPlanBlock; ++c) {
                if (!(word >> c & 1)) continue;
                const int64_t y = kb * kPlanBlock + c;
                const bool inside = x < v.n_q && y < v.n_k;
                if (v.q_bits[e] < 0 && !inside) continue;  // a full block ends at the lengths
                ASSERT_TRUE(inside) << "bit past the lengths: qb " << qb << " kb " << kb << " r "
                                    << r << " c " << c;
                const int64_t i = row(v.q_rows, x), j = row(v.k_rows, y);
                ASSERT_TRUE(i >= 0 && j >= 0) << "padding allowed: x " << x << " y " << y;
                ASSERT_FALSE(got[i * Tk + j]) << "allowed twice: i " << i << " j " << j;
                got[i * Tk + j] = 1;
              }
            }
          }
      }
      for (int64_t i = 0; i < Tq; ++i)
        for (int64_t j = 0; j < Tk; ++j)
          ASSERT_EQ(bool(got[i * Tk + j]), mask.allowed(i, j))
              << "mask " << mi << " i " << i << " j " << j;
    }
  }
}

// (query block, key block, bitmask index) of each entry of a part, from either list.
using Entry = std::tuple<int32_t, int32_t, int32_t>;

TEST(MaskPlan, KeyListsAreTheTranspose) {
  for (const Case& cs : cases()) {
    SCOPED_TRACE(cs.name);
    const MaskPlan plan = make_mask_plan(cs.masks);
    for (const PartView& v : plan.views(plan.ints.data(), plan.words.data())) {
      if (v.n_q == 0) continue;
      std::vector<Entry> by_q, by_k;
      for (int32_t qb = 0; qb < v.n_qb; ++qb)
        for (int32_t e = v.q_ptr[qb]; e < v.q_ptr[qb + 1]; ++e)
          by_q.emplace_back(qb, v.q_col[e], v.q_bits[e]);
      ASSERT_EQ(v.k_ptr[0], 0);
      for (int32_t kb = 0; kb < v.n_kb; ++kb) {
        ASSERT_LE(v.k_ptr[kb], v.k_ptr[kb + 1]);
        for (int32_t e = v.k_ptr[kb]; e < v.k_ptr[kb + 1]; ++e) {
          if (e > v.k_ptr[kb]) {
            ASSERT_LT(v.k_row[e - 1], v.k_row[e]) << "query blocks ascend";
          }
          by_k.emplace_back(v.k_row[e], kb, v.k_bits[e]);
        }
      }
      std::sort(by_k.begin(), by_k.end());  // by_q is in (qb, kb) order already
      EXPECT_EQ(by_k, by_q);
    }
  }
}

// Attention from the plan alone equals the CPU flash kernel on the masks, forward and backward.
// Both run in float64 and differ only in summation order: 1e-12 is ~10⁴ ulps of O(1) values.
TEST(MaskPlan, ReferenceMatchesTheFlashKernel) {
  for (const Case& cs : cases()) {
    SCOPED_TRACE(cs.name);
    const BlockMask& m0 = cs.masks.masks[0];
    const AttnShape s{kB, kH, 2, m0.seq_q(), m0.seq_k(), 16};
    const int64_t nq = s.B * s.H * s.Tq * s.D, nkv = s.B * s.Hkv * s.Tk * s.D;
    const auto q = test::randn<double>(nq, 1), k = test::randn<double>(nkv, 2),
               v = test::randn<double>(nkv, 3), dout = test::randn<double>(nq, 4);
    const double scale = 1.0 / std::sqrt(double(s.D));
    std::vector<double> out(nq), lse(s.B * s.H * s.Tq), ref_out(nq), ref_lse(lse.size());
    flash_forward<double>(s, cs.masks, q.data(), k.data(), v.data(), out.data(), lse.data(), scale);
    const MaskPlan plan = make_mask_plan(cs.masks);
    test::plan_forward(s, plan, q.data(), k.data(), v.data(), ref_out.data(), ref_lse.data(),
                       scale);
    EXPECT_LE(test::max_abs_diff(ref_out, out), 1e-12);
    for (size_t x = 0; x < lse.size(); ++x) {
      if (std::isinf(lse[x])) {  // a row without keys: both -inf, no difference to take
        ASSERT_EQ(ref_lse[x], lse[x]) << "row " << x;
      } else {
        ASSERT_NEAR(ref_lse[x], lse[x], 1e-12) << "row " << x;
      }
    }

    std::vector<double> dq(nq), dk(nkv), dv(nkv), ref_dq(nq), ref_dk(nkv), ref_dv(nkv);
    flash_backward<double>(s, cs.masks, q.data(), k.data(), v.data(), out.data(), lse.data(),
                           dout.data(), dq.data(), dk.data(), dv.data(), scale);
    test::plan_backward(s, plan, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(),
                        ref_dq.data(), ref_dk.data(), ref_dv.data(), scale);
    EXPECT_LE(test::max_abs_diff(ref_dq, dq), 1e-12);
    EXPECT_LE(test::max_abs_diff(ref_dk, dk), 1e-12);
    EXPECT_LE(test::max_abs_diff(ref_dv, dv), 1e-12);
  }
}

TEST(MaskPlan, CountsTheEnginesBlocks) {
  for (const Case& cs : cases()) {
    SCOPED_TRACE(cs.name);
    EXPECT_EQ(make_mask_plan(cs.masks).blocks_computed(), cs.masks.blocks_computed());
  }
}

TEST(MaskPlan, RejectsOtherBlockSizes) {
  try {
    make_mask_plan(MaskSet::shared(causal_mask(100, 32)));
    FAIL() << "block 32 accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("64"), std::string::npos) << msg;
  }
  // The block of a later part is checked too.
  BlockMask m = causal_mask(128, 64);
  m.parts.push_back(causal_mask(128, 32));
  EXPECT_THROW(make_mask_plan(MaskSet::shared(m)), Error);
}

TEST(MaskPlan, RejectsLengthsBeyondInt32) {
  BlockMask m;  // checked before its lists, which would not fit in memory
  m.n_q = m.n_k = int64_t(1) << 31;
  m.block = kPlanBlock;
  try {
    make_mask_plan(MaskSet::shared(m));
    FAIL() << "n = 2^31 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int32"), std::string::npos) << e.what();
  }
}

// Building is linear in the blocks (a document mask is rebuilt per batch): at 65536 tokens it
// takes milliseconds; the bound is loose, to catch an O(n²) scan, not to time the machine.
TEST(MaskPlan, BuildingLongPlansIsFast) {
  const int64_t n = 65536;
  const MaskSet masks = MaskSet::per_sample(
      {restrict_to_documents(longformer_mask(n, 64, 256, 2, {0, 1000}, true), docs(n, 3)),
       restrict_to_documents(strided_mask(n, 64, stride_auto(n), true), docs(n, 4))});
  const auto t0 = std::chrono::steady_clock::now();
  const MaskPlan plan = make_mask_plan(masks);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(plan.blocks_computed(), masks.blocks_computed());
  EXPECT_LT(seconds, 1.0);
}

}  // namespace
}  // namespace longctx::attn
