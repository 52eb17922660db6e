// Evaluation metrics against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "eval/metrics.h"

namespace longctx {
namespace {

TEST(PositionLoss, BucketsAndOverallMeanByHand) {
  PositionLoss p(10, 3);  // width ceil(10/3) = 4: [0,4) [4,8) [8,10)
  ASSERT_EQ(p.buckets().size(), 3u);
  EXPECT_EQ(p.buckets()[2].start, 8);
  EXPECT_EQ(p.buckets()[2].end, 10);
  const float losses[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const uint8_t counted[10] = {1, 1, 0, 0, 1, 0, 0, 1, 0, 1};  // 1, 2 | 5, 8 | 10
  p.add(losses, counted);
  p.add(9, 0.5);
  EXPECT_EQ(p.tokens(), 6);
  EXPECT_DOUBLE_EQ(p.loss(), (1 + 2 + 5 + 8 + 10 + 0.5) / 6);
  EXPECT_DOUBLE_EQ(p.ppl(), std::exp((1 + 2 + 5 + 8 + 10 + 0.5) / 6));
  EXPECT_DOUBLE_EQ(p.buckets()[0].loss(), 1.5);
  EXPECT_DOUBLE_EQ(p.buckets()[1].loss(), 6.5);
  EXPECT_DOUBLE_EQ(p.buckets()[2].loss(), 5.25);
  EXPECT_EQ(p.buckets()[2].tokens, 2);
  EXPECT_DOUBLE_EQ(p.buckets()[1].ppl(), std::exp(6.5));
  EXPECT_THROW(p.add(10, 1.0), Error);
}

TEST(PositionLoss, EmptyBucketHasNoLoss) {
  PositionLoss p(4, 8);  // more buckets than positions: one per position
  EXPECT_EQ(p.buckets().size(), 4u);
  p.add(3, 2.0);
  EXPECT_TRUE(std::isnan(p.buckets()[0].loss()));
  EXPECT_DOUBLE_EQ(p.buckets()[3].loss(), 2.0);
}

// truth -> predicted: (0,0) (0,0) (0,1) (1,1) (1,2) (2,2) (2,2) (2,0)
Confusion example(int classes) {
  Confusion c(classes);
  for (auto [t, p] : std::vector<std::pair<int, int>>{
           {0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 2}, {2, 2}, {2, 2}, {2, 0}})
    c.add(t, p);
  return c;
}

TEST(Confusion, AccuracyF1AndMatrixByHand) {
  const Confusion c = example(3);
  EXPECT_EQ(c.total(), 8);
  const std::vector<std::vector<int64_t>> m = {{2, 1, 0}, {0, 1, 1}, {1, 0, 2}};
  EXPECT_EQ(c.matrix(), m);
  EXPECT_DOUBLE_EQ(c.accuracy(), 5.0 / 8);
  // F1 = 2TP / (2TP + FP + FN): class 0: 4/6, class 1: 2/4, class 2: 4/6.
  const std::vector<double> f1 = c.f1();
  EXPECT_DOUBLE_EQ(f1[0], 4.0 / 6);
  EXPECT_DOUBLE_EQ(f1[1], 0.5);
  EXPECT_DOUBLE_EQ(f1[2], 4.0 / 6);
  EXPECT_DOUBLE_EQ(c.macro_f1(), 11.0 / 18);
}

TEST(Confusion, AbsentClassIsLeftOutOfTheMacroMean) {
  const Confusion c = example(4);
  EXPECT_TRUE(std::isnan(c.f1()[3]));
  EXPECT_DOUBLE_EQ(c.macro_f1(), 11.0 / 18);
  Confusion d(2);  // a class predicted but never true has F1 0 and counts
  d.add(0, 1);
  d.add(0, 0);
  EXPECT_DOUBLE_EQ(d.f1()[1], 0.0);
  EXPECT_DOUBLE_EQ(d.macro_f1(), (2.0 / 3 + 0.0) / 2);
}

TEST(Confusion, LabelOutsideTheClassesIsAnError) {
  Confusion c(3);
  try {
    c.add(3, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("class 3 is outside [0, 3)"), std::string::npos);
  }
}

TEST(Argmax, FirstOfTheLargest) {
  const float x[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f};
  EXPECT_EQ(argmax(x, 5), 1);
}

}  // namespace
}  // namespace longctx
