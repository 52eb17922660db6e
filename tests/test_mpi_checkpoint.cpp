// Checkpoints under mpirun (np 2 and 4): N steps, a checkpoint, then N more on a new trainer
// equal 2N uninterrupted steps bit for bit, with and without ZeRO-1 (whose moments are gathered
// into one unsharded state); and a checkpoint of a dp grid resumes on other grids (one process;
// every rank sequence-parallel), continuing the same global sample order and the same losses.
#include <gtest/gtest.h>

#include <memory>

#include "core/comm.h"
#include "core/config.h"
#include "core/process_grid.h"
#include "tests/test_util.h"
#include "tests/train_run.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_file.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

Config tiny(int micro_batch) {
  Config c = parse_config(
      "model: {vocab_size: 32, d_model: 32, n_layer: 2, n_head: 4, d_ff: 64, max_seq_len: 64}\n"
      "attention: {block_size: 16}\n"
      "data: {seq_len: 32, synthetic: {task: copy, alphabet: 8}}\n"
      "train: {steps: 8, lr: 3.0e-3, warmup: 2, clip: 0.5}\n");
  c.train.micro_batch = micro_batch;
  return c;
}

struct Trace {
  std::vector<double> losses;
  std::vector<float> params;
  std::vector<int64_t> next_sample;  // the loader's position after each step
};

// Steps [from, to) of `t`, appended to r.
void steps(Trainer& t, int to, Trace& r) {
  while (t.next_step() < to) {
    r.losses.push_back(t.step().loss);
    r.next_sample.push_back(t.loader().state().next_sample);
  }
  r.params = t.model().params().values;
}

// The state rank 0 wrote to `path` and read back, on every rank (as run_training resumes).
CheckpointState through_file(Comm& world, CheckpointState s, const std::string& path) {
  std::optional<ResumePoint> rp;
  if (world.rank() == 0) {
    write_checkpoint(path, s);
    rp = ResumePoint{path, read_checkpoint(path)};
  }
  world.barrier();
  return broadcast_resume_point(world, std::move(rp), 0)->state;
}

TEST(Checkpoint, ResumeEqualsUninterruptedBitForBit) {
  ProcessGrid grid = ProcessGrid::make(make_mpi_world_comm(), 1);
  // Rank 0 alone writes; the name keeps the np 2 and np 4 runs (run side by side) apart.
  const std::string dir =
      grid.world->rank() == 0 ? test::temp_dir("mpi_ckpt_np" + std::to_string(grid.world->size())) : "";
  for (int zero : {0, 1}) {
    SCOPED_TRACE(testing::Message() << "zero " << zero);
    Config cfg = tiny(2);
    cfg.parallel.zero = zero;
    Trace want, got;
    {
      Trainer t(cfg, grid);
      steps(t, 2 * 4, want);
    }
    CheckpointState s;
    {
      Trainer t(cfg, grid);
      steps(t, 4, got);
      s = t.checkpoint_state();
    }
    EXPECT_EQ(int64_t(s.m.size()), int64_t(s.values.size())) << "moments gathered whole";
    if (zero == 1) s = through_file(*grid.world, std::move(s), dir + "/step_4.h5");
    Trainer t(cfg, grid);
    t.restore(s);
    EXPECT_EQ(t.next_step(), 4);
    steps(t, 2 * 4, got);
    EXPECT_EQ(got.losses, want.losses);
    EXPECT_EQ(got.next_sample, want.next_sample);
    EXPECT_TRUE(got.params == want.params) << "final parameters differ";
  }
}

// A checkpoint written on dp = world resumes on one process and on dp 1 × sp = world, with the
// global batch kept (micro-batch × dp): the sample order continues where it stopped and the
// losses follow the uninterrupted run (to rounding: another grid sums in another order).
TEST(Checkpoint, ResumesOnAnotherGrid) {
  ProcessGrid dp_grid = ProcessGrid::make(make_mpi_world_comm(), 1);
  const int n = dp_grid.world->size();
  Config cfg = tiny(2);
  cfg.parallel.zero = 1;
  Trace want, first;
  {
    Trainer t(cfg, dp_grid);
    steps(t, 8, want);
  }
  CheckpointState s;
  {
    Trainer t(cfg, dp_grid);
    steps(t, 4, first);
    s = t.checkpoint_state();
  }
  Config whole = tiny(2 * n);  // the same global batch on one replica
  whole.parallel.zero = 1;
  auto check = [&](Trainer& t, const char* what) {
    SCOPED_TRACE(what);
    t.restore(s);
    EXPECT_EQ(t.loader().state().next_sample, s.step * 2 * n) << "continues where it stopped";
    Trace got = first;
    steps(t, 8, got);
    ASSERT_EQ(got.losses.size(), want.losses.size());
    ASSERT_EQ(got.params.size(), want.params.size());
    EXPECT_EQ(got.next_sample, want.next_sample) << "no sample repeated or skipped";
    for (size_t i = 0; i < want.losses.size(); ++i)
      EXPECT_NEAR(got.losses[i], want.losses[i], 1e-5 * want.losses[i]) << "step " << i;
    double worst = 0;
    for (size_t i = 0; i < want.params.size(); ++i) {
      const double d = std::abs(double(got.params[i]) - double(want.params[i]));
      worst = std::max(worst, std::isfinite(d) ? d : 1e30);  // a NaN must not pass
    }
    EXPECT_LT(worst, 1e-4);
  };
  {
    Trainer t(whole);
    check(t, "one process");
  }
  Config sp = whole;
  sp.parallel.sp = n;
  sp.parallel.sp_mode = SpMode::ring;
  ProcessGrid sp_grid = ProcessGrid::make(make_mpi_world_comm(), n);
  Trainer t(sp, sp_grid);
  check(t, "sequence parallel over every rank");
}

}  // namespace
}  // namespace longctx
