// Classification through the Trainer: padded samples cost what their documents cost alone (the
// trainer hands the model the documents and real lengths), and a tiny encoder learns a separable
// task to ≥ 95% accuracy on documents it never trained on, for both poolings, a sparse pattern
// with a global token and linformer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/dataset.h"
#include "data/sample_source.h"
#include "model/cross_entropy.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

// The first step's loss (taken before the update) is the mean over the step's samples; each
// sample's document run alone, unpadded, at its own length, through a model with the same
// initialization gives the oracle.
void expect_step_loss_equals_unpadded(const Config& cfg, const Dataset* ds) {
  Trainer trainer(cfg);
  const double loss = trainer.step().loss;
  const auto src = make_sample_source(cfg, ds);
  const int64_t T = cfg.data.seq_len;
  double want = 0;
  bool padded = false;
  for (int64_t s = 0; s < cfg.train.micro_batch; ++s) {
    std::vector<int32_t> in(static_cast<size_t>(T)), tg(in), doc(in);
    src->read(s, SampleView{in.data(), tg.data(), doc.data()});
    const int64_t len = std::count(doc.begin(), doc.end(), 0);
    padded = padded || len < T;
    Transformer<float> alone(cfg.model, cfg.attention, 1, len, Recompute::none,
                             Objective::classify, cfg.run.seed);
    alone.init(cfg.run.seed);
    int64_t count = 0;
    want += alone.forward(in.data(), tg.data(), &count);
  }
  want /= double(cfg.train.micro_batch);
  EXPECT_TRUE(padded);
  EXPECT_NEAR(loss, want, 1e-5 * want);
}

const char* const kMasked[] = {"{pattern: flash}", "{pattern: longformer, window: 4, "
                                                   "global_tokens: [0]}"};

TEST(ClassifyTrain, ListOpsStepLossEqualsTheUnpaddedExpressions) {
  for (const char* attention : kMasked)
    for (const char* pool : {"mean", "cls"}) {
      SCOPED_TRACE(testing::Message() << attention << " | pool " << pool);
      expect_step_loss_equals_unpadded(
          parse_config(
              std::string("model: {vocab_size: 16, d_model: 32, n_layer: 2, n_head: 4, d_ff: "
                          "64, max_seq_len: 64, n_classes: 10, pool: ") + pool + "}\n" +
              "attention: " + attention + "\nobjective: classify\n"
              "data: {seq_len: 64, synthetic: {task: listops, min_len: 8}}\n"
              "train: {micro_batch: 4, steps: 1}\n"),
          nullptr);
    }
}

// The separable task: filler symbols with one to three copies of the class's marker (ids 0..3)
// at random places; documents of 6 to 32 tokens, padded to 32.
constexpr int kClasses = 4, kSeqLen = 32;

void write_marker_dataset(const std::string& dir, uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::vector<test::Doc> docs(static_cast<size_t>(n));
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    test::Doc& d = docs[size_t(i)];
    d.resize(6 + rng() % (kSeqLen - 6 + 1));
    for (uint32_t& x : d) x = uint32_t(kClasses + rng() % 10);
    labels[size_t(i)] = int32_t(rng() % kClasses);
    const int copies = 1 + int(rng() % 3);
    for (int c = 0; c < copies; ++c) d[rng() % d.size()] = uint32_t(labels[size_t(i)]);
  }
  test::write_dataset(dir, test::byte_attrs(), {docs}, {labels}, {"a", "b", "c", "d"});
}

Config marker_config(const std::string& train, const std::string& attention,
                     const std::string& pool, int steps) {
  return parse_config(
      "model: {vocab_size: 259, d_model: 32, n_layer: 2, n_head: 4, d_ff: 64, max_seq_len: 32, "
      "n_classes: 4, pool: " + pool + "}\n" +
      "attention: " + attention + "\nobjective: classify\n"
      "data: {source: hdf5, train: " + train + ", packing: doc, seq_len: 32}\n"
      "train: {micro_batch: 16, steps: " + std::to_string(steps) +
      ", lr: 3.0e-3, min_lr: 3.0e-4, warmup: 5}\n");
}

TEST(ClassifyTrain, DocSamplesStepLossEqualsTheUnpaddedDocuments) {
  const std::string dir = test::temp_dir("classify_docs");
  write_marker_dataset(dir, 3, 64);
  const Dataset ds(dir);
  for (const char* attention : kMasked)
    for (const char* pool : {"mean", "cls"}) {
      SCOPED_TRACE(testing::Message() << attention << " | pool " << pool);
      expect_step_loss_equals_unpadded(marker_config(dir, attention, pool, 1), &ds);
    }
}

// Accuracy of the trained model on every document of `dir`, fed as training feeds them: padded,
// with their documents and real lengths.
double held_out_accuracy(Trainer& trainer, const std::string& dir) {
  Config cfg = trainer.config();
  cfg.data.train = dir;
  const Dataset ds(dir);
  const auto src = make_sample_source(cfg, &ds);
  Transformer<float>& model = trainer.model();
  const int64_t B = model.batch(), T = cfg.data.seq_len, K = model.n_classes();
  std::vector<int32_t> in(size_t(B * T)), tg(size_t(B * T)), doc(size_t(B * T));
  int64_t right = 0, n = 0;
  for (int64_t s0 = 0; s0 + B <= src->samples_per_epoch(); s0 += B) {
    for (int64_t b = 0; b < B; ++b)
      src->read(s0 + b, SampleView{&in[b * T], &tg[b * T], &doc[b * T]});
    BatchStructure bs;
    bs.lengths = BatchStructure::first_doc_lengths(doc.data(), B, T);
    if (cfg.attention.pattern != Pattern::linformer) bs.doc = doc.data();
    model.set_batch(bs);
    int64_t count = 0;
    model.forward(in.data(), tg.data(), &count);
    for (int64_t b = 0; b < B; ++b) {
      const float* row = model.logits() + b * K;
      right += std::max_element(row, row + K) - row == tg[b * T];
      ++n;
    }
  }
  return double(right) / double(n);
}

TEST(ClassifyTrain, TinyEncoderReaches95PercentOnHeldOutDocuments) {
  const std::string train = test::temp_dir("classify_train"), held = test::temp_dir("classify_held");
  write_marker_dataset(train, 1, 1024);
  write_marker_dataset(held, 2, 256);
  struct Case {
    const char *attention, *pool;
    int steps;
  };
  // Linformer needs more steps on this task.
  for (const Case& c : {Case{"{pattern: flash}", "mean", 80}, Case{"{pattern: flash}", "cls", 80},
                        Case{"{pattern: longformer, window: 4, global_tokens: [0]}", "cls", 80},
                        Case{"{pattern: linformer, linformer: {k: 16}}", "mean", 160}}) {
    SCOPED_TRACE(testing::Message() << c.attention << " | pool " << c.pool);
    const Config cfg = marker_config(train, c.attention, c.pool, c.steps);
    Trainer trainer(cfg);
    for (int s = 0; s < cfg.train.steps; ++s) trainer.step();
    const double acc = held_out_accuracy(trainer, held);
    EXPECT_GE(acc, 0.95);
    std::printf("%s, pool %s: held-out accuracy %.3f\n", c.attention, c.pool, acc);
  }
}

}  // namespace
}  // namespace longctx
