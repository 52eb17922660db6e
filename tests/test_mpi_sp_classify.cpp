// Sequence-parallel training of the classifier, and of the patterns that reach sp through it
// (linformer) or through the sp cores (dense), against one process under mpirun: the pooled
// states are completed over the sp group and the head and loss count once, so the losses and
// parameters of the run equal the single-process run's. Adapts to the world size: sp = all
// ranks, and with 4 ranks also dp = 2 × sp = 2. Padded samples (listops: the expression, then
// padding as a document of its own) check that mean pooling counts the real rows of every rank
// and divides by the sample's length, wherever the padding starts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/comm.h"
#include "core/config.h"
#include "core/process_grid.h"
#include "tests/train_run.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

constexpr int kSteps = 10;

Config classifier(const std::string& attention, const std::string& pool, int micro_batch) {
  Config c = parse_config(
      "model: {vocab_size: 16, d_model: 32, n_layer: 2, n_head: 4, d_ff: 64, max_seq_len: 64, "
      "n_classes: 2, pool: " + pool + "}\n"
      "attention: {block_size: 8, " + attention + "}\n"
      "objective: classify\n"
      "data: {seq_len: 64, synthetic: {task: majority, alphabet: 8}}\n"
      // lr 1e-3: with 2 labels per micro-batch, 3e-3 lets Adam grow fp32 rounding past 1e-5
      // within 10 steps even under plain data parallelism.
      "train: {lr: 1.0e-3, warmup: 1}\n");
  c.train.steps = kSteps;
  c.train.micro_batch = micro_batch;
  return c;
}

// ListOps expressions of 8 to 64 tokens in 64 positions: with sp = 4 some ranks hold padding only.
Config listops(const std::string& attention, const std::string& pool, int micro_batch) {
  Config c = parse_config(
      "model: {vocab_size: 16, d_model: 32, n_layer: 2, n_head: 4, d_ff: 64, max_seq_len: 64, "
      "n_classes: 10, pool: " + pool + "}\n"
      "attention: {block_size: 8, " + attention + "}\n"
      "objective: classify\n"
      "data: {seq_len: 64, synthetic: {task: listops, min_len: 8}}\n"
      "train: {lr: 1.0e-3, warmup: 1}\n");
  c.train.steps = kSteps;
  c.train.micro_batch = micro_batch;
  return c;
}

Config causal_lm(const std::string& attention, int micro_batch) {
  Config c = parse_config(
      "model: {vocab_size: 32, d_model: 32, n_layer: 2, n_head: 4, d_ff: 64, max_seq_len: 64}\n"
      "attention: {block_size: 8, " + attention + "}\n"
      "data: {seq_len: 64, synthetic: {task: copy, alphabet: 8}}\n"
      "train: {lr: 3.0e-3, warmup: 1}\n");
  c.train.steps = kSteps;
  c.train.micro_batch = micro_batch;
  return c;
}

using test::RunLog;

// Each pattern with both pools somewhere; linformer with each way of sharing its projections.
struct Case {
  std::string attention, pool;
};
const std::vector<Case> kCases{
    {"pattern: flash", "cls"},
    {"pattern: flash, heads: gqa, n_kv_head: 2", "mean"},
    {"pattern: longformer, window: 6, dilation: [1, 2, 1, 2], global_tokens: [0, 37]", "mean"},
    {"pattern: bigbird, bigbird: {random_blocks: 1, global_blocks: 1, window_blocks: 1}", "cls"},
    {"pattern: strided, strided: {stride: 5}", "mean"},
    {"pattern: dense", "cls"},
    {"pattern: linformer, linformer: {k: 16, share: headwise}", "mean"},
    {"pattern: linformer, linformer: {k: 16, share: kv}", "cls"},
    {"pattern: linformer, linformer: {k: 16, share: layerwise}", "mean"},
};

std::unique_ptr<ProcessGrid> grid_for(int sp) {
  const int n = make_mpi_world_comm()->size();
  if (n % sp != 0) return nullptr;
  return std::make_unique<ProcessGrid>(ProcessGrid::make(make_mpi_world_comm(), sp));
}

const std::vector<Case> kPaddedCases{
    {"pattern: flash", "mean"},
    {"pattern: longformer, window: 6, global_tokens: [0]", "mean"},
    {"pattern: dense", "cls"},
    {"pattern: linformer, linformer: {k: 16, share: headwise}", "mean"},
};

using MakeConfig = Config (*)(const std::string&, const std::string&, int);

void check_classifier(int sp, MakeConfig make = classifier,
                      const std::vector<Case>& cases = kCases) {
  const std::unique_ptr<ProcessGrid> grid = grid_for(sp);
  if (!grid) GTEST_SKIP() << "world size not a multiple of sp " << sp;
  for (const Case& c : cases) {
    const RunLog want = test::train_run(make(c.attention, c.pool, 2 * grid->dp_size), nullptr);
    for (SpMode mode : {SpMode::ulysses, SpMode::ring}) {
      SCOPED_TRACE(testing::Message() << c.attention << " | pool " << c.pool << " | "
                                      << name_of(mode) << " | dp " << grid->dp_size << " x sp "
                                      << sp);
      Config cfg = make(c.attention, c.pool, 2);
      cfg.parallel.sp = sp;
      cfg.parallel.sp_mode = mode;
      test::expect_same_run(test::train_run(cfg, grid.get()), want);
    }
  }
}

TEST(SequenceParallelClassify, PooledOverTheGroupMatchesOneProcess) {
  check_classifier(make_mpi_world_comm()->size());
}

TEST(SequenceParallelClassify, DataTimesSequenceParallel) {
  if (make_mpi_world_comm()->size() < 4) GTEST_SKIP() << "needs 4 ranks";
  check_classifier(2);
}

TEST(SequenceParallelClassify, PaddedSamplesMatchOneProcess) {
  check_classifier(make_mpi_world_comm()->size(), listops, kPaddedCases);
  if (make_mpi_world_comm()->size() >= 4) check_classifier(2, listops, kPaddedCases);
}

// Dense under sp runs the tiled cores with its causal mask (ring: the zigzag layout).
TEST(SequenceParallelClassify, DenseCausalLmMatchesOneProcess) {
  const int sp = make_mpi_world_comm()->size();
  const std::unique_ptr<ProcessGrid> grid = grid_for(sp);
  const RunLog want = test::train_run(causal_lm("pattern: dense", 2), nullptr);
  for (SpMode mode : {SpMode::ulysses, SpMode::ring}) {
    SCOPED_TRACE(testing::Message() << "dense causal_lm | " << name_of(mode) << " | sp " << sp);
    Config cfg = causal_lm("pattern: dense", 2);
    cfg.parallel.sp = sp;
    cfg.parallel.sp_mode = mode;
    test::expect_same_run(test::train_run(cfg, grid.get()), want);
  }
}

}  // namespace
}  // namespace longctx
