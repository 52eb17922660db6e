// Data parallel against one process, run under mpirun with any number of ranks: dp ranks with
// micro-batch B take the steps one process takes with micro-batch dp·B (same losses, same
// parameters), with and without ZeRO-1; gradient buckets of any size give the same result.
#include <gtest/gtest.h>

#include <cmath>

#include "core/comm.h"
#include "core/config.h"
#include "core/process_grid.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

Config tiny(int micro_batch) {
  Config c = parse_config(
      "model: {vocab_size: 32, d_model: 32, n_layer: 2, n_head: 2, d_ff: 64, max_seq_len: 64}\n"
      "attention: {block_size: 16}\n"
      "data: {seq_len: 32, synthetic: {task: copy, alphabet: 8}}\n"
      "train: {steps: 10, lr: 3.0e-3, warmup: 2, clip: 0.5}\n");
  c.train.micro_batch = micro_batch;
  return c;
}

struct RunLog {
  std::vector<double> losses, norms;
  std::vector<float> params;
};

RunLog train(const Config& cfg, ProcessGrid* grid) {
  std::unique_ptr<Trainer> t = grid ? std::make_unique<Trainer>(cfg, *grid)
                                    : std::make_unique<Trainer>(cfg);
  RunLog r;
  for (int s = 0; s < cfg.train.steps; ++s) {
    const StepStats st = t->step();
    r.losses.push_back(st.loss);
    r.norms.push_back(st.grad_norm);
  }
  r.params = t->model().params().values;
  return r;
}

void expect_same_run(const RunLog& got, const RunLog& want, double tol) {
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t s = 0; s < want.losses.size(); ++s) {
    EXPECT_NEAR(got.losses[s], want.losses[s], tol * std::abs(want.losses[s])) << "step " << s;
    EXPECT_NEAR(got.norms[s], want.norms[s], tol * std::abs(want.norms[s]) + 1e-9) << "step " << s;
  }
  double worst = 0;
  for (size_t i = 0; i < want.params.size(); ++i) {
    const double d = std::abs(double(got.params[i]) - double(want.params[i]));
    worst = std::max(worst, std::isfinite(d) ? d : 1e30);  // a NaN must not pass
  }
  EXPECT_LT(worst, tol) << "largest parameter difference";
}

// Every rank ends with the same parameters as rank 0.
void expect_ranks_agree(Comm& world, const std::vector<float>& params) {
  std::vector<float> root(params);
  world.broadcast(root.data(), int64_t(root.size()), 0);
  EXPECT_EQ(root, params) << "rank " << world.rank() << " differs from rank 0";
}

TEST(DataParallel, EqualsOneProcessWithTheWholeBatch) {
  ProcessGrid grid = ProcessGrid::make(make_mpi_world_comm(), 1);
  const int dp = grid.dp_size, B = 2;
  const RunLog want = train(tiny(B * dp), nullptr);  // every rank computes the reference itself
  for (int zero : {0, 1})
    for (double bucket_mb : {25.0, 0.01}) {
      SCOPED_TRACE(testing::Message() << "zero " << zero << " bucket_mb " << bucket_mb);
      Config cfg = tiny(B);
      cfg.parallel.zero = zero;
      cfg.parallel.bucket_mb = bucket_mb;
      const RunLog got = train(cfg, &grid);
      expect_same_run(got, want, 1e-5);
      expect_ranks_agree(*grid.world, got.params);
    }
  // Buckets reduced during backward (the default above) or after it; with accumulation only the
  // last micro-batch's backward may start them.
  for (bool overlap : {false, true})
    for (int accum : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "overlap " << overlap << " accum " << accum);
      Config cfg = tiny(B / accum);
      cfg.train.grad_accum = accum;
      cfg.parallel.overlap = overlap;
      cfg.parallel.bucket_mb = 0.005;
      const RunLog got = train(cfg, &grid);
      expect_same_run(got, want, 1e-5);
      expect_ranks_agree(*grid.world, got.params);
    }
}

TEST(DataParallel, ZeroShardsTheOptimizerState) {
  ProcessGrid grid = ProcessGrid::make(make_mpi_world_comm(), 1);
  Config cfg = tiny(2);
  cfg.parallel.zero = 1;
  cfg.train.steps = 1;
  Trainer t(cfg, grid);
  const int64_t n = t.model().params().size();
  const int64_t shard = (n + grid.dp_size - 1) / grid.dp_size;
  EXPECT_LE(t.data_parallel()->optimizer_bytes(), 2 * shard * 4);
  int64_t total = t.data_parallel()->optimizer_bytes();
  grid.world->all_reduce_sum(&total, 1);
  EXPECT_EQ(total, 2 * n * 4) << "the shards cover the parameters once";
}

TEST(DataParallel, GridNeedsSpToDivideTheWorld) {
  const int n = make_mpi_world_comm()->size();
  if (n == 1) GTEST_SKIP() << "needs several ranks";
  EXPECT_THROW(ProcessGrid::make(make_mpi_world_comm(), n + 1), ConfigError);
  ProcessGrid g = ProcessGrid::make(make_mpi_world_comm(), n);
  EXPECT_EQ(g.dp_size, 1);
  EXPECT_EQ(g.sp_size, n);
  EXPECT_EQ(g.sp->size(), n);
  EXPECT_EQ(g.dp->size(), 1);
}

}  // namespace
}  // namespace longctx

