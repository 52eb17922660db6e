// Optimizer, schedule and training loop against formulas written from their definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "trainer/adamw.h"
#include "trainer/lr_schedule.h"
#include "tests/test_util.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

TEST(Schedule, WarmupThenCosineToMinLr) {
  TrainConfig c;
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.warmup = 4;
  c.steps = 14;
  EXPECT_DOUBLE_EQ(learning_rate(c, 0), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(c, 3), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(c, 4), 1.0);  // cosine starts at the peak
  EXPECT_NEAR(learning_rate(c, 13), 0.1, 1e-12);  // and ends at min_lr on the last step
  // Halfway through the decay the cosine is at the midpoint.
  c.steps = 15;
  EXPECT_NEAR(learning_rate(c, 4 + 5), 0.55, 1e-12);
  for (int s = 4; s + 1 < c.steps; ++s) EXPECT_GE(learning_rate(c, s), learning_rate(c, s + 1));
}

TEST(AdamW, MatchesTheUpdateRule) {
  ParamStore<double> st;
  st.add("w", {3}, true);
  st.add("norm.w", {2}, false);
  st.allocate();
  st.values = {0.5, -1.0, 2.0, 1.0, 0.3};
  TrainConfig c;
  c.weight_decay = 0.1;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  AdamW<double> opt(st, c);
  std::vector<double> w = st.values, m(5, 0), v(5, 0);
  const double lr = 0.01;
  for (int t = 1; t <= 3; ++t) {
    std::vector<double> g = {0.1 * t, -0.2, 0.3, 0.05 * t, -0.4};
    st.grads = g;
    opt.step(st, lr, t);
    for (int i = 0; i < 5; ++i) {  // Loshchilov & Hutter, Algorithm 2, with bias correction
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.95, t));
      const double decay = i < 3 ? 0.1 : 0.0;
      w[i] = w[i] - lr * (mh / (std::sqrt(vh) + 1e-8) + decay * w[i]);
    }
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(st.values[i], w[i], 1e-12) << "t " << t << " i " << i;
  }
}

TEST(AdamW, GradNormAndClipping) {
  std::vector<float> g(1000);
  double ref = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = std::sin(double(i));
    ref += double(g[i]) * g[i];
  }
  ref = std::sqrt(ref);
  const double n = grad_norm(g);
  EXPECT_NEAR(n, ref, 1e-9 * ref);
  clip_grads(g, n, 1.0);
  EXPECT_NEAR(grad_norm(g), 1.0, 1e-5);
  EXPECT_EQ(clip_grads(g, 0.5, 1.0), 1.0);  // below the threshold: untouched
}

Config small_config() {
  Config cfg = parse_config("");
  cfg.model.n_layer = 2;
  cfg.model.d_model = 64;
  cfg.model.d_ff = 128;
  cfg.data.seq_len = 48;
  cfg.train.steps = 4;
  cfg.train.warmup = 1;
  return cfg;
}

// The global batch is a fixed set of samples: 2 micro-batches of 2 equal 1 micro-batch of 4.
TEST(Trainer, GradientAccumulationEqualsALargerBatch) {
  Config a = small_config(), b = small_config();
  a.train.micro_batch = 4;
  a.train.grad_accum = 1;
  b.train.micro_batch = 2;
  b.train.grad_accum = 2;
  Trainer ta(a), tb(b);
  for (int s = 0; s < 3; ++s) {
    const StepStats sa = ta.step(), sb = tb.step();
    EXPECT_NEAR(sa.loss, sb.loss, 1e-6 * sa.loss) << "step " << s;
    EXPECT_NEAR(sa.grad_norm, sb.grad_norm, 1e-5 * sa.grad_norm) << "step " << s;
    EXPECT_EQ(sa.tokens, sb.tokens);
  }
  const auto& pa = ta.model().params().values;
  const auto& pb = tb.model().params().values;
  double diff = 0;
  for (size_t i = 0; i < pa.size(); ++i) diff = std::max(diff, double(std::abs(pa[i] - pb[i])));
  EXPECT_LT(diff, 1e-5);
}

TEST(Trainer, ClassifierLearnsMajority) {
  Config cfg = parse_config(
      "objective: classify\nmodel: {n_layer: 2, d_model: 64, d_ff: 128, pool: mean}\n"
      "data: {seq_len: 64, synthetic: {task: majority, alphabet: 4}}\n"
      "train: {micro_batch: 16, steps: 40, lr: 3.0e-3, min_lr: 3.0e-4, warmup: 5}");
  double first = 0, last = 0;
  test::train_loss_ratio(cfg, 5, &first, &last);
  // Chance is ln 2 = 0.69; the last steps must be clearly below the first ones.
  EXPECT_LT(last, 0.8 * first) << first << " -> " << last;
}

TEST(Trainer, DivergenceIsReportedWithTheStep) {
  Config cfg = small_config();
  Trainer t(cfg);
  t.step();
  ParamStore<float>& st = t.model().params();
  const ParamInfo& wq = st.infos()[st.find("blocks.1.attn.wq")];
  st.values[wq.offset + 5] = std::nanf("");  // one poisoned weight reaches every token's loss
  try {
    t.step();
    FAIL() << "expected divergence";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("diverged at step"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longctx
