// Sequence-parallel training against one process, under mpirun: every rank holds seq_len / sp
// positions of each sequence, attention spans them through Ulysses or ring, and the losses and
// parameters of the run equal the single-process run's, for each pattern and head scheme; with
// 4 ranks also dp = 2 × sp = 2.
#include <gtest/gtest.h>

#include <cmath>

#include "core/comm.h"
#include "core/config.h"
#include "core/process_grid.h"
#include "tests/train_run.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

Config tiny(const std::string& attention, int micro_batch) {
  Config c = parse_config(
      "model: {vocab_size: 32, d_model: 32, n_layer: 2, n_head: 4, d_ff: 64, max_seq_len: 64}\n"
      "attention: {block_size: 8, " + attention + "}\n"
      "data: {seq_len: 64, synthetic: {task: copy, alphabet: 8}}\n"
      "train: {steps: 4, lr: 3.0e-3, warmup: 1}\n");
  c.train.micro_batch = micro_batch;
  return c;
}

using test::RunLog;

const std::vector<std::string> kAttention{
    "pattern: flash",
    "pattern: longformer, window: 6, dilation: [1, 2, 1, 2], global_tokens: [0, 37]",
    "pattern: bigbird, bigbird: {random_blocks: 1, global_blocks: 1, window_blocks: 1}",
    "pattern: strided, strided: {stride: 5}",
};
const std::vector<std::string> kHeads{"heads: mha", "heads: gqa, n_kv_head: 2",
                                      "heads: mla, mla: {kv_lora_rank: 8, rope_dim: 4}"};

void check_grid(int sp) {
  const int n = make_mpi_world_comm()->size();
  if (n % sp != 0) GTEST_SKIP() << n << " ranks, sp " << sp;
  ProcessGrid grid = ProcessGrid::make(make_mpi_world_comm(), sp);
  for (const std::string& attention : kAttention)
    for (const std::string& heads : kHeads) {
      const std::string a = attention + ", " + heads;
      const RunLog want = test::train_run(tiny(a, 2 * grid.dp_size), nullptr);
      for (SpMode mode : {SpMode::ulysses, SpMode::ring}) {
        SCOPED_TRACE(testing::Message() << a << " | " << name_of(mode) << " | dp "
                                        << grid.dp_size << " x sp " << sp);
        Config cfg = tiny(a, 2);
        cfg.parallel.sp = sp;
        cfg.parallel.sp_mode = mode;
        test::expect_same_run(test::train_run(cfg, &grid), want);
      }
    }
}

TEST(SequenceParallel, EveryRankHoldsASliceAndTrainingMatchesOneProcess) {
  check_grid(make_mpi_world_comm()->size());
}

TEST(SequenceParallel, DataTimesSequenceParallel) {
  const int n = make_mpi_world_comm()->size();
  if (n < 4) GTEST_SKIP() << "needs 4 ranks";
  check_grid(2);
}

}  // namespace
}  // namespace longctx
