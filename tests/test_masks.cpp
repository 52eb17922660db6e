// Mask builders against their definitions: for each pattern, the pairs BlockMask::allowed
// admits equal a predicate written here from the paper's definition, pair by pair; the block
// lists are well formed, exact (no empty block listed, a block is flagged full exactly when
// every score in it is allowed) and counted right; BigBird's random blocks follow its rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "attention/bigbird.h"
#include "attention/block_mask.h"
#include "attention/longformer.h"
#include "attention/strided.h"
#include "core/error.h"
#include "core/rng.h"

namespace longctx::attn {
namespace {

using Pred = std::function<bool(int64_t i, int64_t j)>;

// Structure of one part: offsets, ascending columns in range, and for a permuted part an order
// that is a bijection between the real indices and the sequence.
void check_structure(const BlockMask& m, int64_t n) {
  ASSERT_EQ(int64_t(m.row_ptr.size()), m.n_qblocks() + 1);
  ASSERT_EQ(m.col.size(), m.full.size());
  ASSERT_EQ(m.row_ptr.front(), 0);
  ASSERT_EQ(m.row_ptr.back(), int64_t(m.col.size()));
  for (int64_t qb = 0; qb < m.n_qblocks(); ++qb) {
    ASSERT_LE(m.row_ptr[qb], m.row_ptr[qb + 1]);
    for (int64_t e = m.row_ptr[qb]; e < m.row_ptr[qb + 1]; ++e) {
      ASSERT_GE(m.col[e], 0);
      ASSERT_LT(m.col[e], m.n_kblocks());
      if (e > m.row_ptr[qb]) {
        ASSERT_LT(m.col[e - 1], m.col[e]) << "columns ascend";
      }
    }
  }
  if (!m.order) {
    ASSERT_EQ(m.n_q, n);
    return;
  }
  ASSERT_EQ(int64_t(m.order->inv.size()), n);
  ASSERT_EQ(int64_t(m.order->pos.size()), m.n_q);
  for (int64_t p = 0; p < n; ++p) ASSERT_EQ(m.order->pos[m.order->inv[p]], p);
  EXPECT_EQ(std::count_if(m.order->pos.begin(), m.order->pos.end(),
                          [](int64_t p) { return p >= 0; }),
            n);
}

// Checks a (possibly multi-part) mask over an n × n sequence against `pred`.
void check_mask(const BlockMask& mask, int64_t n, const Pred& pred) {
  std::vector<const BlockMask*> parts{&mask};
  for (const BlockMask& p : mask.parts) parts.push_back(&p);
  for (const BlockMask* p : parts) {
    check_structure(*p, n);
    EXPECT_EQ(p->block, mask.block);
    if (::testing::Test::HasFatalFailure()) return;
  }

  int64_t want_scores = 0;
  std::vector<uint8_t> row(n);
  for (int64_t i = 0; i < n; ++i) {
    mask.allowed_row(i, row.data());
    for (int64_t j = 0; j < n; ++j) {
      const bool want = pred(i, j);
      want_scores += want;
      ASSERT_EQ(mask.allowed(i, j), want) << "i " << i << " j " << j;
      ASSERT_EQ(bool(row[j]), want) << "allowed_row, i " << i << " j " << j;
    }
  }
  EXPECT_EQ(mask.allowed_scores(), want_scores);

  // Each listed block claims some score; full exactly when it claims all of them (no padding).
  // Claims summed over the parts equal the allowed count, so the parts are disjoint.
  int64_t claimed_total = 0, computed = 0;
  for (const BlockMask* p : parts)
    for (int64_t qb = 0; qb < p->n_qblocks(); ++qb)
      for (int64_t e = p->row_ptr[qb]; e < p->row_ptr[qb + 1]; ++e) {
        int64_t claimed = 0, elements = 0;
        for (int64_t x = qb * p->block; x < std::min(p->n_q, (qb + 1) * p->block); ++x)
          for (int64_t y = p->col[e] * p->block;
               y < std::min(p->n_k, (int64_t(p->col[e]) + 1) * p->block); ++y) {
            ++elements;
            const int64_t i = p->position(x), j = p->position(y);
            if (i < 0 || j < 0) continue;
            const bool c = p->full[e] || p->rule.allowed(i, j);
            if (c) {
              ASSERT_TRUE(pred(i, j)) << "claimed but not allowed: i " << i << " j " << j;
            }
            claimed += c;
          }
        EXPECT_GT(claimed, 0) << "empty block qb " << qb << " kb " << p->col[e];
        EXPECT_EQ(bool(p->full[e]), claimed == elements)
            << "full flag of qb " << qb << " kb " << p->col[e];
        claimed_total += claimed;
        computed += elements;
      }
  EXPECT_EQ(claimed_total, want_scores);
  EXPECT_EQ(mask.computed_scores(), computed);
  EXPECT_EQ(mask.blocks_computed(), [&] {
    int64_t b = 0;
    for (const BlockMask* p : parts) b += int64_t(p->col.size());
    return b;
  }());
}

Pred longformer_pred(int64_t window, int64_t dilation, std::vector<int64_t> globals,
                     bool causal) {
  const std::set<int64_t> g(globals.begin(), globals.end());
  return [=](int64_t i, int64_t j) {
    if (causal && j > i) return false;
    if (g.count(i) || g.count(j)) return true;
    const int64_t d = std::abs(i - j);
    return d <= window && d % dilation == 0;
  };
}

Pred strided_pred(int64_t stride, bool causal) {
  return [=](int64_t i, int64_t j) {
    const int64_t d = causal ? i - j : std::abs(i - j);
    return d >= 0 && (d < stride || d % stride == 0);
  };
}

TEST(Masks, LongformerMatchesDefinition) {
  struct Case {
    int64_t window, dilation;
  };
  for (bool causal : {false, true})
    for (int64_t n : {1, 5, 17, 64, 100, 257})
      for (int block : {1, 16, 64})
        for (Case c : {Case{0, 1}, Case{3, 1}, Case{20, 1}, Case{20, 3}, Case{31, 2},
                       Case{1000, 1}, Case{40, 5}}) {
          if (block == 1 && n > 100) continue;
          // none; the first token; one in the middle, inside its neighbours' windows, and the
          // last; two adjacent ones
          for (const std::vector<int64_t>& globals :
               std::vector<std::vector<int64_t>>{{}, {0}, {0, n / 2, n - 1}, {n / 3, n / 3 + 1}}) {
            if (!globals.empty() && globals.back() >= n) continue;
            SCOPED_TRACE(testing::Message()
                         << "n " << n << " block " << block << " window " << c.window
                         << " dilation " << c.dilation << " globals " << globals.size()
                         << (causal ? " causal" : ""));
            const BlockMask m =
                longformer_mask(n, block, c.window, c.dilation, globals, causal);
            check_mask(m, n, longformer_pred(c.window, c.dilation, globals, causal));
            if (HasFatalFailure()) return;
          }
        }
}

TEST(Masks, LongformerRejectsGlobalsOutsideTheSequence) {
  for (int64_t bad : {int64_t(-1), int64_t(100), int64_t(250)}) {
    try {
      longformer_mask(100, 16, 8, 1, {3, bad}, false);
      FAIL() << "no error for global position " << bad;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("100"), std::string::npos) << msg;
    }
  }
}

// Per-head dilation: one mask per head when they differ, shared when equal; per-sample globals
// add the sample to the mapping.
TEST(Masks, LongformerMaskSets) {
  const int64_t n = 150;
  const MaskSet shared = longformer_masks(n, 16, 10, {2, 2, 2}, {7}, true);
  EXPECT_EQ(shared.masks.size(), 1u);
  const MaskSet per_head = longformer_masks(n, 16, 10, {1, 2, 3}, {7}, false);
  ASSERT_EQ(per_head.masks.size(), 3u);
  const MaskSet per_sample_head =
      longformer_masks_per_sample(n, 16, 10, {1, 3}, {{7}, {0, 149}}, false);
  ASSERT_EQ(per_sample_head.masks.size(), 4u);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 3; ++h) {
      SCOPED_TRACE(testing::Message() << "b " << b << " h " << h);
      check_mask(shared.get(b, h), n, longformer_pred(10, 2, {7}, true));
      check_mask(per_head.get(b, h), n, longformer_pred(10, 1 + h, {7}, false));
      if (h < 2)
        check_mask(per_sample_head.get(b, h), n,
                   longformer_pred(10, 1 + 2 * h, b == 0 ? std::vector<int64_t>{7}
                                                         : std::vector<int64_t>{0, 149},
                                   false));
    }
}

TEST(Masks, StridedMatchesDefinition) {
  for (bool causal : {false, true})
    for (int64_t n : {1, 2, 10, 37, 100, 257})
      for (int block : {1, 4, 16})
        for (int64_t stride : {int64_t(1), int64_t(2), int64_t(3), int64_t(7), int64_t(16),
                               int64_t(17), stride_auto(n), n + 5}) {
          if (block == 1 && n > 100) continue;
          SCOPED_TRACE(testing::Message() << "n " << n << " block " << block << " stride "
                                          << stride << (causal ? " causal" : ""));
          check_mask(strided_mask(n, block, stride, causal), n, strided_pred(stride, causal));
          // The same set from the rule alone, in sequence order (what a single-part lowering
          // would compute, far less efficiently).
          ElementRule rule;
          rule.causal = causal;
          rule.window = stride - 1;
          rule.stride = stride;
          check_mask(mask_from_rule(n, block, rule), n, strided_pred(stride, causal));
          if (HasFatalFailure()) return;
        }
  EXPECT_EQ(stride_auto(1), 1);
  EXPECT_EQ(stride_auto(8192), 91);
  EXPECT_EQ(stride_auto(65536), 256);
}

// Random rules combining every field, against the rule's definition written out here, through
// the lowering and through the row evaluators the kernels use (ElementRule::row, row_at).
TEST(Masks, RuleLoweringMatchesDefinition) {
  Rng rng(42);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t n = 1 + int64_t(rng.below(160));
    const int block = int(1 + rng.below(24));
    ElementRule r;
    r.causal = rng.below(2);
    r.window = rng.below(5) == 0 ? -1 : int64_t(rng.below(40));
    r.dilation = 1 + int64_t(rng.below(4));
    r.stride = rng.below(2) ? 0 : 1 + int64_t(rng.below(30));
    r.min_distance = rng.below(3) == 0 ? int64_t(rng.below(6)) : 0;
    std::vector<int64_t> g;
    for (uint64_t k = rng.below(4); k > 0; --k) g.push_back(int64_t(rng.below(uint64_t(n))));
    if (!g.empty()) r.globals = make_global_set(n, g);
    const std::set<int64_t> gs(g.begin(), g.end());
    const Pred pred = [&](int64_t i, int64_t j) {
      const int64_t d = std::abs(i - j);
      if ((r.causal && j > i) || d < r.min_distance) return false;
      if (r.window < 0 || gs.count(i) || gs.count(j)) return true;
      return (d <= r.window && d % r.dilation == 0) || (r.stride > 0 && d % r.stride == 0);
    };
    SCOPED_TRACE(testing::Message() << "trial " << trial << " n " << n << " block " << block
                                    << " causal " << r.causal << " window " << r.window
                                    << " dilation " << r.dilation << " stride " << r.stride
                                    << " min_distance " << r.min_distance << " globals "
                                    << g.size());
    check_mask(mask_from_rule(n, block, r), n, pred);
    std::vector<uint8_t> ok(n);
    std::vector<int64_t> js(n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j0 = int64_t(rng.below(uint64_t(n)));
      const int64_t nk = 1 + int64_t(rng.below(uint64_t(n - j0)));
      r.row(i, j0, nk, ok.data());
      for (int64_t c = 0; c < nk; ++c) {
        ASSERT_EQ(bool(ok[c]), pred(i, j0 + c)) << "row: i " << i << " j " << j0 + c;
      }
      // Keys at scattered positions, some of them padding (-1), as a permuted part has them.
      for (int64_t c = 0; c < nk; ++c)
        js[c] = rng.below(5) == 0 ? -1 : int64_t(rng.below(uint64_t(n)));
      r.row_at(i, js.data(), nk, ok.data());
      for (int64_t c = 0; c < nk; ++c) {
        ASSERT_EQ(bool(ok[c]), js[c] >= 0 && pred(i, js[c])) << "row_at: i " << i << " j " << js[c];
      }
    }
    r.row_at(-1, js.data(), n, ok.data());
    EXPECT_EQ(std::count(ok.begin(), ok.end(), uint8_t(1)), 0) << "a padding query sees nothing";
    if (HasFatalFailure()) return;
  }
}

struct BigBirdBlocks {
  std::set<int64_t> window, global;
};

// The blocks query block qb must list besides its random ones, from the definition.
BigBirdBlocks bigbird_fixed(int64_t qb, int64_t nb, const BigBirdSpec& s) {
  BigBirdBlocks b;
  const int64_t last = s.causal ? qb : nb - 1;
  for (int64_t kb = std::max<int64_t>(0, qb - s.window_blocks);
       kb <= std::min(last, qb + s.window_blocks); ++kb)
    b.window.insert(kb);
  for (int64_t kb = 0; kb < s.global_blocks && kb <= last; ++kb) b.global.insert(kb);
  if (!s.causal)
    for (int64_t kb = nb - s.global_blocks; kb < nb; ++kb) b.global.insert(kb);
  return b;
}

bool bigbird_global_query(int64_t qb, int64_t nb, const BigBirdSpec& s) {
  return qb < s.global_blocks || (!s.causal && qb >= nb - s.global_blocks);
}

std::set<int64_t> listed(const BlockMask& m, int64_t qb) {
  return std::set<int64_t>(m.col.begin() + m.row_ptr[qb], m.col.begin() + m.row_ptr[qb + 1]);
}

// Window, globals and random blocks per the definition; the element pairs follow the listed
// blocks with only the causal cut.
void check_bigbird(const BlockMask& m, int64_t n, const BigBirdSpec& s) {
  const int64_t nb = (n + s.block - 1) / s.block;
  ASSERT_EQ(m.n_qblocks(), nb);
  ASSERT_TRUE(m.parts.empty());
  for (int64_t qb = 0; qb < nb; ++qb) {
    SCOPED_TRACE(testing::Message() << "query block " << qb);
    const std::set<int64_t> got = listed(m, qb);
    if (bigbird_global_query(qb, nb, s)) {
      EXPECT_EQ(int64_t(got.size()), s.causal ? qb + 1 : nb) << "a global block sees everything";
      continue;
    }
    const BigBirdBlocks fixed = bigbird_fixed(qb, nb, s);
    std::set<int64_t> random = got;
    for (int64_t kb : fixed.window) EXPECT_EQ(random.erase(kb), 1u) << "window block " << kb;
    for (int64_t kb : fixed.global) random.erase(kb);
    for (int64_t kb : fixed.global) EXPECT_TRUE(got.count(kb)) << "global block " << kb;
    // Candidates: outside the window and the globals, and in the past when causal.
    int64_t candidates = 0;
    for (int64_t kb = 0; kb < (s.causal ? qb - s.window_blocks : nb); ++kb)
      candidates += !fixed.window.count(kb) && !fixed.global.count(kb);
    EXPECT_EQ(int64_t(random.size()), std::min(s.random_blocks, candidates));
    for (int64_t kb : random) {
      EXPECT_FALSE(fixed.window.count(kb) || fixed.global.count(kb));
      if (s.causal) {
        EXPECT_LT(kb, qb - s.window_blocks) << "causal draws come from the past";
      }
    }
  }
  check_mask(m, n, [&](int64_t i, int64_t j) {
    return (!s.causal || j <= i) && listed(m, i / s.block).count(j / s.block) > 0;
  });
}

TEST(Masks, BigBirdMatchesDefinition) {
  for (bool causal : {false, true})
    for (const BigBirdSpec& spec :
         {BigBirdSpec{16, 1, 1, 3, causal}, BigBirdSpec{8, 2, 2, 2, causal},
          BigBirdSpec{8, 0, 0, 4, causal}, BigBirdSpec{1, 1, 1, 1, causal},
          BigBirdSpec{5, 3, 1, 0, causal}}) {
      const int64_t min_n = bigbird_min_length(spec);
      for (int64_t n : {min_n, min_n + 1, min_n + spec.block - 1, 3 * min_n + 7, int64_t(300)}) {
        if (n < min_n) continue;
        SCOPED_TRACE(testing::Message()
                     << "n " << n << " block " << spec.block << " window_blocks "
                     << spec.window_blocks << " global_blocks " << spec.global_blocks
                     << " random_blocks " << spec.random_blocks << (causal ? " causal" : ""));
        for (int head = 0; head < 2; ++head) check_bigbird(bigbird_mask(n, spec, 5, 1, head, -1), n, spec);
        if (HasFatalFailure()) return;
      }
    }
}

bool same_blocks(const BlockMask& a, const BlockMask& b) {
  return a.row_ptr == b.row_ptr && a.col == b.col && a.full == b.full;
}

TEST(Masks, BigBirdDrawsFollowSeedLayerHeadAndStep) {
  const int64_t n = 64 * 40;
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "bidirectional");
    auto set = [&](uint64_t seed, int layer, int64_t step) {
      return bigbird_masks(n, 64, 1, 1, 3, causal, seed, layer, 4, step);
    };
    const MaskSet a = set(1, 0, -1), again = set(1, 0, -1);
    ASSERT_EQ(a.masks.size(), 4u);
    EXPECT_EQ(a.h_stride, 1);
    for (int h = 0; h < 4; ++h) EXPECT_TRUE(same_blocks(a.masks[h], again.masks[h]));
    for (int h = 1; h < 4; ++h) EXPECT_FALSE(same_blocks(a.masks[0], a.masks[h])) << "head " << h;
    EXPECT_FALSE(same_blocks(a.masks[0], set(1, 1, -1).masks[0])) << "layers differ";
    EXPECT_FALSE(same_blocks(a.masks[0], set(2, 0, -1).masks[0])) << "seeds differ";
    const MaskSet step0 = set(1, 0, 0), step1 = set(1, 0, 1);
    EXPECT_FALSE(same_blocks(step0.masks[0], step1.masks[0])) << "per_step redraws";
    EXPECT_TRUE(same_blocks(step1.masks[2], set(1, 0, 1).masks[2]));
  }
}

// Draws are uniform over the candidates: over many heads, every candidate block of a query
// block gets picked, at roughly the expected rate.
TEST(Masks, BigBirdDrawsCoverTheCandidates) {
  const BigBirdSpec spec{4, 1, 1, 3, false};
  const int64_t n = 4 * 20, nb = 20, qb = 9, heads = 2000;
  std::vector<int64_t> hits(nb, 0);
  for (int h = 0; h < heads; ++h) {
    const BlockMask m = bigbird_mask(n, spec, 3, 0, h, -1);
    for (int64_t kb : listed(m, qb)) ++hits[kb];
  }
  const BigBirdBlocks fixed = bigbird_fixed(qb, nb, spec);
  const int64_t candidates = nb - int64_t(fixed.window.size() + fixed.global.size());
  const double expected = double(heads) * 3 / double(candidates);
  for (int64_t kb = 0; kb < nb; ++kb) {
    if (fixed.window.count(kb) || fixed.global.count(kb)) {
      EXPECT_EQ(hits[kb], heads);
      continue;
    }
    EXPECT_NEAR(double(hits[kb]), expected, 5 * std::sqrt(expected)) << "block " << kb;
  }
}

TEST(Masks, BigBirdTooShortStatesTheMinimum) {
  // bidirectional: 2·1 + 2·1 + 1 + 3 = 8 blocks, causal: 1 + 1 + 1 + 3 = 6 blocks of 64
  for (auto [causal, min_n] : {std::pair<bool, int64_t>{false, 449}, {true, 321}}) {
    const BigBirdSpec spec{64, 1, 1, 3, causal};
    EXPECT_EQ(bigbird_min_length(spec), min_n);
    EXPECT_NO_THROW(bigbird_mask(min_n, spec, 1, 0, 0, -1));
    for (int64_t n : {int64_t(1), min_n - 64, min_n - 1}) {
      try {
        bigbird_mask(n, spec, 1, 0, 0, -1);
        FAIL() << "no error for n " << n;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("minimum length is " + std::to_string(min_n)),
                  std::string::npos)
            << e.what();
      }
    }
  }
}

TEST(Masks, MaskSetMapsSamplesAndHeads) {
  std::vector<BlockMask> six;
  for (int64_t i = 0; i < 6; ++i) six.push_back(causal_mask(10 + i, 4));
  AttnShape s;
  s.B = 2;
  s.H = 3;
  const MaskSet psh = MaskSet::per_sample_head(six, 3);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 3; ++h) EXPECT_EQ(psh.get(b, h).n_q, 10 + b * 3 + h);
  const MaskSet ph = MaskSet::per_head({six[0], six[1], six[2]});
  const MaskSet ps = MaskSet::per_sample({six[0], six[1]});
  const MaskSet sh = MaskSet::shared(six[4]);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 3; ++h) {
      EXPECT_EQ(ph.get(b, h).n_q, 10 + h);
      EXPECT_EQ(ps.get(b, h).n_q, 10 + b);
      EXPECT_EQ(sh.get(b, h).n_q, 14);
    }
  s.Tq = s.Tk = 10;
  const MaskSet same = MaskSet::per_head({six[0], six[0], six[0]});
  EXPECT_NO_THROW(same.check(s, "test"));
  s.B = 1;
  s.H = 4;
  EXPECT_THROW(same.check(s, "test"), Error) << "four heads, three masks";
  s.H = 3;
  s.Tq = s.Tk = 11;
  EXPECT_THROW(same.check(s, "test"), Error) << "wrong length";
}

// Random documents along n positions: ids staying or growing by one, some one token long.
std::vector<int32_t> random_docs(int64_t n, Rng& rng) {
  std::vector<int32_t> doc(size_t(n), 0);
  for (int64_t p = 1; p < n; ++p) doc[p] = doc[p - 1] + (rng.below(9) == 0 ? 1 : 0);
  return doc;
}

// Every pattern restricted to documents admits exactly its own pairs within one document, with
// exact block lists (no block left that lost all its scores).
TEST(Masks, DocumentRestrictionMatchesDefinition) {
  Rng rng(77);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t n = 1 + int64_t(rng.below(150));
    const int block = int(1 + rng.below(20));
    const bool causal = rng.below(2);
    const auto doc = std::make_shared<const std::vector<int32_t>>(random_docs(n, rng));
    std::vector<std::pair<std::string, BlockMask>> bases{
        {"full", full_mask(n, n, block)},
        {"causal", causal_mask(n, block)},
        {"longformer", longformer_mask(n, block, 1 + int64_t(rng.below(30)),
                                       1 + int64_t(rng.below(3)), {n / 2}, causal)},
        {"strided", strided_mask(n, block, 1 + int64_t(rng.below(12)), causal)}};
    const BigBirdSpec bb{std::max(1, block / 4), 1, 1, 1, causal};
    if (n >= bigbird_min_length(bb)) bases.push_back({"bigbird", bigbird_mask(n, bb, 3, 0, 0, -1)});
    for (const auto& [name, base] : bases) {
      SCOPED_TRACE(testing::Message() << name << " trial " << trial << " n " << n << " block "
                                      << block << " causal " << causal);
      const BlockMask m = restrict_to_documents(base, doc);
      check_mask(m, n, [&](int64_t i, int64_t j) {
        return base.allowed(i, j) && (*doc)[i] == (*doc)[j];
      });
      if (HasFatalFailure()) return;
      EXPECT_LE(m.blocks_computed(), base.blocks_computed());
    }
  }
  const auto bad = std::make_shared<const std::vector<int32_t>>(std::vector<int32_t>{0, 2, 2});
  EXPECT_THROW(restrict_to_documents(full_mask(3, 3, 2), bad), Error) << "ids must grow by one";
}

// Chosen rows against every key: row r at position pos[r] sees keys j <= pos[r] when causal.
TEST(Masks, RowsMaskMatchesDefinition) {
  for (bool causal : {false, true})
    for (int block : {1, 2, 3, 8}) {
      const int64_t n = 29;
      const std::vector<int64_t> pos{0, 3, 4, 17, 28};
      const BlockMask m = rows_mask(pos, n, block, causal);
      SCOPED_TRACE(testing::Message() << "block " << block << " causal " << causal);
      int64_t want = 0;
      for (int64_t r = 0; r < int64_t(pos.size()); ++r)
        for (int64_t j = 0; j < n; ++j) {
          const bool ok = !causal || j <= pos[r];
          want += ok;
          ASSERT_EQ(m.allowed(r, j), ok) << "row " << r << " key " << j;
        }
      EXPECT_EQ(m.allowed_scores(), want);
      for (int64_t qb = 0; qb < m.n_qblocks(); ++qb)
        for (int64_t e = m.row_ptr[qb]; e < m.row_ptr[qb + 1]; ++e)
          EXPECT_EQ(fill_by_elements(m, qb, m.col[e]),
                    m.full[e] ? BlockFill::full : BlockFill::partial);
      // Restricted to documents, rows keep only their own document's keys.
      Rng rng(5);
      const auto doc = std::make_shared<const std::vector<int32_t>>(random_docs(n, rng));
      const BlockMask d = restrict_to_documents(m, doc);
      for (int64_t r = 0; r < int64_t(pos.size()); ++r)
        for (int64_t j = 0; j < n; ++j)
          ASSERT_EQ(d.allowed(r, j), m.allowed(r, j) && (*doc)[pos[r]] == (*doc)[j]);
    }
}

// Building is linear in n: at 65536 tokens it takes milliseconds (the bound here is loose, to
// catch an O(n²) scan, not to time the machine).
TEST(Masks, BuildingLongMasksIsFast) {
  const int64_t n = 65536;
  auto seconds = [](auto&& build) {
    const auto t0 = std::chrono::steady_clock::now();
    const BlockMask m = build();
    EXPECT_GT(m.blocks_computed(), 0);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  EXPECT_LT(seconds([&] { return longformer_mask(n, 64, 256, 1, {0, 1000, 40000}, false); }), 1.0);
  EXPECT_LT(seconds([&] { return longformer_mask(n, 64, 512, 4, {0}, true); }), 1.0);
  EXPECT_LT(seconds([&] { return bigbird_mask(n, BigBirdSpec{}, 1, 0, 0, -1); }), 1.0);
  EXPECT_LT(seconds([&] { return strided_mask(n, 64, stride_auto(n), false); }), 1.0);
  EXPECT_LT(seconds([&] { return strided_mask(n, 64, 181, true); }), 1.0);
}

}  // namespace
}  // namespace longctx::attn
