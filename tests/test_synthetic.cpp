// Synthetic tasks: structure from their definitions, and samples that depend only on
// (seed, epoch, index).
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "data/synthetic.h"
#include "model/cross_entropy.h"

namespace longctx {
namespace {

struct Sample {
  std::vector<int32_t> in, tg;
};

Sample draw(const SyntheticData& d, int T, int64_t epoch, int64_t index) {
  Sample s{std::vector<int32_t>(T), std::vector<int32_t>(T)};
  d.sample(epoch, index, s.in.data(), s.tg.data());
  return s;
}

SyntheticConfig task(SyntheticTask t) {
  SyntheticConfig c;
  c.task = t;
  return c;
}

TEST(Synthetic, CopyRepeatsTheSegmentAndScoresOnlyTheCopy) {
  const int T = 20, V = 256;
  SyntheticData d(task(SyntheticTask::copy), V, T, 1);
  const Sample s = draw(d, T, 0, 5);
  // seq (T+1 = 21 tokens): seg[10] SEP seg[10]; inputs = seq[0..20), targets = seq[1..21).
  std::vector<int32_t> seq(s.in);
  seq.push_back(s.tg.back());
  EXPECT_EQ(seq[10], d.sep());
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(seq[i], seq[11 + i]);
    EXPECT_LT(seq[i], 16);  // the alphabet
  }
  for (int t = 0; t < T; ++t) {
    const int32_t expected = t < 10 ? kIgnoreIndex : seq[t + 1];  // noise and SEP: not scored
    EXPECT_EQ(s.tg[t], expected) << t;
  }
}

TEST(Synthetic, PasskeyIsAnsweredAtTheEnd) {
  const int T = 64, V = 256;
  SyntheticData d(task(SyntheticTask::passkey), V, T, 2);
  for (int64_t idx = 0; idx < 20; ++idx) {
    const Sample s = draw(d, T, 0, idx);
    std::vector<int32_t> seq(s.in);
    seq.push_back(s.tg.back());
    int key_at = -1;
    for (int i = 0; i < T; ++i)
      if (seq[i] == d.key()) key_at = i;
    ASSERT_GE(key_at, 0);
    const int q = T + 1 - 1 - SyntheticData::kKeyDigits;
    ASSERT_EQ(seq[q], d.query());
    for (int k = 0; k < SyntheticData::kKeyDigits; ++k) {
      EXPECT_EQ(seq[q + 1 + k], seq[key_at + 1 + k]);
      EXPECT_EQ(s.tg[key_at + k], kIgnoreIndex);  // the planted digits are not predictable
      EXPECT_EQ(s.tg[q + k], seq[q + 1 + k]);     // the answer is scored
    }
  }
}

TEST(Synthetic, SamplesDependOnlyOnSeedEpochIndex) {
  const int T = 32;
  SyntheticData a(task(SyntheticTask::copy), 256, T, 7), b(task(SyntheticTask::copy), 256, T, 7),
      c(task(SyntheticTask::copy), 256, T, 8);
  draw(b, T, 0, 99);  // asking in another order changes nothing
  EXPECT_EQ(draw(a, T, 0, 3).in, draw(b, T, 0, 3).in);
  EXPECT_NE(draw(a, T, 0, 3).in, draw(a, T, 0, 4).in);
  EXPECT_NE(draw(a, T, 0, 3).in, draw(a, T, 1, 3).in);
  EXPECT_NE(draw(a, T, 0, 3).in, draw(c, T, 0, 3).in);
}

TEST(Synthetic, RandomCoversTheVocabulary) {
  const int T = 4096, V = 64;
  SyntheticData d(task(SyntheticTask::random), V, T, 3);
  const Sample s = draw(d, T, 0, 0);
  std::vector<int> seen(V, 0);
  for (int32_t t : s.in) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, V);
    seen[t] = 1;
  }
  for (int v = 0; v < V; ++v) EXPECT_TRUE(seen[v]) << v;
}

TEST(Synthetic, MajorityLabelCountsSymbols) {
  const int T = 33, V = 64;
  SyntheticData d(task(SyntheticTask::majority), V, T, 4);
  int ones = 0;
  for (int64_t idx = 0; idx < 200; ++idx) {
    const Sample s = draw(d, T, 0, idx);
    int zeros = 0, onesc = 0;
    for (int32_t t : s.in) {
      zeros += t == 0;
      onesc += t == 1;
    }
    if (zeros != onesc) {
      EXPECT_EQ(s.tg[0], zeros > onesc ? 1 : 0) << idx;
    }
    for (int t = 1; t < T; ++t) EXPECT_EQ(s.tg[t], kIgnoreIndex);
    ones += s.tg[0];
  }
  EXPECT_GT(ones, 60);  // both classes occur
  EXPECT_LT(ones, 140);
}

TEST(Synthetic, TooShortForPasskeyIsAnError) {
  EXPECT_THROW(SyntheticData(task(SyntheticTask::passkey), 256, 8, 1), Error);
}

}  // namespace
}  // namespace longctx
