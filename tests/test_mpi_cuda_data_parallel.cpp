// Data parallel on GPUs over NCCL, run under mpirun (label `gpu`: skipped unless every rank has a
// CUDA device of its own): dp ranks with micro-batch B take the steps one GPU takes with
// micro-batch dp·B, in fp32 (same losses and gradient norms up to summation order), and every
// rank ends with rank 0's parameters.
#include <gtest/gtest.h>

#include <vector>

#include "core/comm.h"
#include "core/config.h"
#include "core/cuda_env.h"
#include "core/process_grid.h"
#include "tests/train_run.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

Config tiny(int micro_batch) {
  Config c = parse_config(
      "run: {device: cuda}\n"
      "model: {vocab_size: 32, d_model: 64, n_layer: 2, n_head: 2, d_ff: 64, max_seq_len: 64}\n"
      "data: {seq_len: 40, synthetic: {task: copy, alphabet: 8}}\n"
      "train: {steps: 8, lr: 3.0e-3, warmup: 2, clip: 0.5}\n");
  c.train.micro_batch = micro_batch;
  return c;
}

TEST(GpuDataParallel, EqualsOneGpuWithTheWholeBatch) {
  ProcessGrid grid = ProcessGrid::make(make_mpi_world_comm(), 1);
  if (cuda_device_count() < grid.world->size())
    GTEST_SKIP() << cuda_device_count() << " CUDA devices for " << grid.world->size() << " ranks";
  const int dp = grid.dp_size, B = 2;
  const test::RunLog want = test::train_run(tiny(B * dp), nullptr);
  const test::RunLog got = test::train_run(tiny(B), &grid);
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t s = 0; s < want.losses.size(); ++s) {
    EXPECT_NEAR(got.losses[s], want.losses[s], 1e-5 * want.losses[s]) << "step " << s;
    EXPECT_NEAR(got.norms[s], want.norms[s], 1e-4 * want.norms[s]) << "step " << s;
  }
  std::vector<float> root(got.params);
  grid.world->broadcast(root.data(), int64_t(root.size()), 0);
  EXPECT_EQ(root, got.params) << "rank " << grid.world->rank() << " differs from rank 0";
}

}  // namespace
}  // namespace longctx
