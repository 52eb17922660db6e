// Evaluation tasks against computations written in the test: the model's own loss over the
// same samples (ppl), prompts checked token by token and scored by argmax here (passkey), a
// confusion matrix rebuilt from forward passes (classify).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "data/listops.h"
#include "eval/tasks.h"
#include "model/cross_entropy.h"
#include "tests/shard_fixtures.h"

namespace longctx {
namespace {

using test::error_of;

Config tiny(const std::vector<std::string>& sets = {}) {
  return parse_config(
      "model: {vocab_size: 32, d_model: 16, n_layer: 1, n_head: 2, d_ff: 32, max_seq_len: 64}\n"
      "attention: {pattern: flash, block_size: 8}\n"
      "data: {seq_len: 32, synthetic: {task: copy, alphabet: 8}}\n"
      "train: {micro_batch: 3}\n"
      "eval: {samples: 7, buckets: 4}\n",
      sets);
}

ParamStore<float> random_params(const Config& cfg) {
  Transformer<float> m(cfg.model, cfg.attention, 1, cfg.data.seq_len, Recompute::none,
                       cfg.objective, cfg.run.seed);
  m.init(7);
  return m.params();
}

TEST(EvalPpl, EqualsTheModelsLossOverTheSameSamples) {
  const Config cfg = tiny();
  const ParamStore<float> params = random_params(cfg);
  const ojson r = eval_ppl(cfg, params);
  // Oracle: one sample at a time through a batch-1 model, summing forward()'s returned loss.
  ValidationSet val = open_validation(cfg);
  auto model = build_eval_model(cfg, params, 1, 32);
  double sum = 0;
  int64_t count = 0;
  std::vector<int32_t> in(32), tg(32);
  for (int64_t s = 0; s < 7; ++s) {
    val.source->read(s, {in.data(), tg.data(), nullptr});
    int64_t c = 0;
    sum += model->forward(in.data(), tg.data(), &c);
    count += c;
  }
  EXPECT_EQ(r["tokens"].get<int64_t>(), count);
  EXPECT_NEAR(r["loss"].get<double>(), sum / count, 1e-6);
  EXPECT_NEAR(r["ppl"].get<double>(), std::exp(sum / count), 1e-5);
  // copy: 16 symbols, SEP, the 16 again: only positions 16..31 predict a target.
  const ojson& b = r["buckets"];
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0]["tokens"].get<int64_t>(), 0);
  EXPECT_TRUE(b[0]["loss"].is_null());
  EXPECT_EQ(b[1]["tokens"].get<int64_t>(), 0);
  EXPECT_EQ(b[2]["tokens"].get<int64_t>(), 7 * 8);
  EXPECT_EQ(b[3]["end"].get<int64_t>(), 32);
  double weighted = 0;
  for (const auto& x : b)
    if (x["tokens"].get<int64_t>() > 0) weighted += x["loss"].get<double>() * x["tokens"].get<double>();
  EXPECT_NEAR(weighted / count, sum / count, 1e-6);
}

TEST(EvalPpl, HeldOutSamplesDifferFromTraining) {
  const Config cfg = tiny();
  ValidationSet val = open_validation(cfg);
  auto train = make_sample_source(cfg, nullptr);
  std::vector<int32_t> a(32), b(32), t(32);
  int same = 0;
  for (int64_t s = 0; s < 20; ++s) {
    val.source->read(s, {a.data(), t.data(), nullptr});
    train->read(s, {b.data(), t.data(), nullptr});
    same += a == b;
  }
  EXPECT_EQ(same, 0);
}

TEST(EvalPasskey, PromptsHaveTheTaskFormat) {
  const Config cfg = tiny({"data.synthetic.task=passkey"});
  const int32_t key = 32 - 3, query = 32 - 2;
  for (double depth : {0.0, 0.5, 1.0}) {
    const PasskeyPrompt p = passkey_prompt(cfg, 40, depth, 3);
    ASSERT_EQ(p.inputs.size(), 40u);
    const int64_t q = 40 - 5;  // QUERY, then four digits; the fifth is the last target
    EXPECT_EQ(p.inputs[q], query);
    EXPECT_EQ(p.key_at, std::llround(depth * (q - 1 - 5)));
    EXPECT_EQ(p.inputs[p.key_at], key);
    for (int64_t i = 0; i < 40; ++i) {
      const bool digit_after_key = i > p.key_at && i <= p.key_at + 5;
      if (i != p.key_at && !digit_after_key && i < q) {
        EXPECT_EQ(p.inputs[i], i % 8) << i;
      }
      if (i >= q && i < q + 5) {
        EXPECT_EQ(p.targets[i], p.inputs[p.key_at + 1 + (i - q)]) << i;  // the planted digit
        if (i > q) {
          EXPECT_EQ(p.inputs[i], p.targets[i - 1]);
        }
      } else {
        EXPECT_EQ(p.targets[i], kIgnoreIndex) << i;
      }
    }
  }
  // Digits differ between trials.
  EXPECT_NE(passkey_prompt(cfg, 40, 0.5, 0).targets, passkey_prompt(cfg, 40, 0.5, 1).targets);
}

TEST(EvalPasskey, GridIsTheArgmaxRetrievalOfEachPrompt) {
  Config cfg = tiny({"data.synthetic.task=passkey", "data.synthetic.alphabet=4",
                     "eval.passkey_lengths=[16, 32]", "eval.passkey_depths=3",
                     "eval.passkey_trials=5"});
  const ParamStore<float> params = random_params(cfg);
  const ojson r = eval_passkey(cfg, params);
  ASSERT_EQ(r["grid"].size(), 2u);
  const std::vector<double> depths = {0.0, 0.5, 1.0};
  EXPECT_EQ(r["depths"].get<std::vector<double>>(), depths);
  int64_t digits = 0, total = 0;
  for (int li = 0; li < 2; ++li) {
    const int L = li == 0 ? 16 : 32;
    auto model = build_eval_model(cfg, params, 1, L);
    for (int di = 0; di < 3; ++di) {
      int right = 0;
      for (int t = 0; t < 5; ++t) {
        const PasskeyPrompt p = passkey_prompt(cfg, L, depths[di], t);
        int64_t c = 0;
        model->forward(p.inputs.data(), p.targets.data(), &c);
        int ok = 0;
        for (int i = 0; i < L; ++i)
          if (p.targets[i] != kIgnoreIndex) ok += argmax(model->logits() + i * 32, 32) == p.targets[i];
        right += ok == 5;
        digits += ok;
        total += 5;
      }
      EXPECT_DOUBLE_EQ(r["grid"][li][di].get<double>(), right / 5.0) << L << " " << di;
    }
  }
  EXPECT_DOUBLE_EQ(r["digit_accuracy"].get<double>(), double(digits) / double(total));
  EXPECT_GT(digits, 0);  // an alphabet of 4: a random model gets some digits right
}

TEST(EvalClassify, ConfusionOfTheModelsPredictions) {
  const Config cfg = tiny({"objective=classify", "data.synthetic.task=majority", "data.synthetic.alphabet=4"});
  const ParamStore<float> params = random_params(cfg);
  const ojson r = eval_classify(cfg, params);
  ValidationSet val = open_validation(cfg);
  auto model = build_eval_model(cfg, params, 1, 32);
  Confusion c(2);
  std::vector<int32_t> in(32), tg(32);
  for (int64_t s = 0; s < 7; ++s) {
    val.source->read(s, {in.data(), tg.data(), nullptr});
    int64_t n = 0;
    model->forward(in.data(), tg.data(), &n);
    c.add(tg[0], argmax(model->logits(), 2));
  }
  EXPECT_EQ(r["confusion"].get<std::vector<std::vector<int64_t>>>(), c.matrix());
  EXPECT_EQ(r["samples"].get<int64_t>(), 7);
  EXPECT_DOUBLE_EQ(r["accuracy"].get<double>(), c.accuracy());
}

TEST(EvalModel, ParametersOfAnotherModelAreRefusedByName) {
  const Config cfg = tiny();
  const Config other = tiny({"model.d_model=24"});
  const ParamStore<float> params = random_params(other);
  const std::string msg = error_of([&] { build_eval_model(cfg, params, 1, 32); });
  EXPECT_CONTAINS(msg, "parameter 'wte' has shape [32, 24]; the config's model needs [32, 16]");
  EXPECT_CONTAINS(error_of([&] { build_eval_model(cfg, random_params(cfg), 1, 65); }),
                  "longer than the model's max_seq_len (64)");
}

TEST(EvalTasks, TaskOfTheOtherObjectiveIsRefused) {
  const Config cfg = tiny();
  const ParamStore<float> params = random_params(cfg);
  EXPECT_CONTAINS(error_of([&] { run_eval_task(EvalTask::classify, cfg, params); }),
                  "the classify task evaluates a classifier; this model's objective is causal_lm");
  EXPECT_CONTAINS(error_of([&] { tiny({"eval.tasks=[listops]"}); }),
                  "'eval.tasks' holds listops, which evaluates a classifier");
  EXPECT_CONTAINS(error_of([&] { tiny({"eval.tasks=[ppl, bogus]"}); }),
                  "ppl|passkey|classify|listops|kvcache");
}

}  // namespace
}  // namespace longctx

namespace longctx {
namespace {

TEST(EvalListOps, AccuracyOfEachGeneratedExpression) {
  const Config cfg = parse_config(
      "model: {vocab_size: 16, d_model: 16, n_layer: 1, n_head: 2, d_ff: 32, max_seq_len: 64,"
      " n_classes: 10}\nobjective: classify\nattention: {pattern: flash, block_size: 8}\n"
      "data: {seq_len: 32, synthetic: {task: listops}}\ntrain: {micro_batch: 3}\n"
      "eval: {samples: 5, listops_lengths: [16, 32]}\n");
  Transformer<float> init(cfg.model, cfg.attention, 1, 32, Recompute::none, cfg.objective, 1);
  init.init(11);
  const ParamStore<float>& params = init.params();
  const ojson r = eval_listops(cfg, params);
  Confusion all(10);
  for (const int L : {16, 32}) {
    auto model = build_eval_model(cfg, params, 1, L);
    Confusion c(10);
    for (int64_t i = 0; i < 5; ++i) {
      ListOpsConfig lc;
      lc.min_len = L / 2;
      lc.max_len = L;
      const ListOpsSample x = listops_sample(lc, listops_eval_seed(cfg, L), i);
      std::vector<int32_t> in(size_t(L), kListOpsPad), tg(size_t(L), kIgnoreIndex), doc(size_t(L), 1);
      std::copy(x.tokens.begin(), x.tokens.end(), in.begin());
      std::fill_n(doc.begin(), x.tokens.size(), 0);
      tg[0] = x.label;
      BatchStructure bs;
      bs.doc = doc.data();
      bs.lengths = {int64_t(x.tokens.size())};
      model->set_batch(bs);
      int64_t n = 0;
      model->forward(in.data(), tg.data(), &n);
      c.add(x.label, argmax(model->logits(), 10));
      all.add(x.label, argmax(model->logits(), 10));
    }
    const ojson& row = r["lengths"][L == 16 ? 0 : 1];
    EXPECT_EQ(row["length"], L);
    EXPECT_DOUBLE_EQ(row["accuracy"].get<double>(), c.accuracy());
  }
  EXPECT_EQ(r["confusion"].get<std::vector<std::vector<int64_t>>>(), all.matrix());
}

}  // namespace
}  // namespace longctx

namespace longctx {
namespace {

// BigBird needs a minimum length: a default passkey length below it is skipped and reported,
// a chosen one is an error.
TEST(EvalPasskey, DefaultLengthTooShortForThePatternIsSkipped) {
  const std::vector<std::string> sets = {
      "data.synthetic.task=passkey", "attention.pattern=bigbird", "attention.block_size=8",
      "attention.bigbird.random_blocks=3", "data.seq_len=64", "eval.passkey_trials=1",
      "eval.passkey_depths=1"};
  const Config cfg = tiny(sets);
  const ParamStore<float> params = random_params(cfg);
  const ojson r = eval_passkey(cfg, params);
  ASSERT_TRUE(r.contains("skipped")) << r.dump();
  EXPECT_EQ(r["skipped"][0]["length"], 16);
  EXPECT_CONTAINS(r["skipped"][0]["reason"].get<std::string>(), "16 tokens is too short");
  EXPECT_EQ(r["skipped"].size(), 2u);  // 16 and 32
  EXPECT_EQ(r["lengths"], ojson::parse("[64]"));
  std::vector<std::string> chosen = sets;
  chosen.push_back("eval.passkey_lengths=[16, 64]");
  EXPECT_CONTAINS(error_of([&] { eval_passkey(tiny(chosen), params); }), "passkey at length 16: ");
}

}  // namespace
}  // namespace longctx
