// The training side of checkpoints in one process: resuming equals not stopping (bit for bit),
// which config changes a resume refuses, the writer's files (latest pointer, keep), resume: auto
// skipping a damaged checkpoint, and metrics.jsonl reading as one run after a resume.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_file.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

Config tiny(const std::vector<std::string>& overrides = {}) {
  return parse_config(
      "model: {vocab_size: 32, d_model: 32, n_layer: 2, n_head: 4, d_ff: 64, max_seq_len: 64}\n"
      "attention: {block_size: 16}\n"
      "data: {seq_len: 32, synthetic: {task: copy, alphabet: 8}}\n"
      "train: {steps: 6, micro_batch: 2, lr: 3.0e-3, warmup: 2}\n",
      overrides);
}

TEST(Checkpoint, ResumeThroughAFileEqualsUninterrupted) {
  for (const char* pattern : {"flash", "bigbird"}) {  // bigbird redraws its blocks per step
    SCOPED_TRACE(pattern);
    Config cfg = tiny({std::string("attention.pattern=") + pattern,
                       "attention.bigbird.resample=per_step", "attention.block_size=4",
                       "attention.bigbird.random_blocks=1"});
    std::vector<double> want, got;
    std::vector<float> want_params;
    {
      Trainer t(cfg);
      for (int s = 0; s < 6; ++s) want.push_back(t.step().loss);
      want_params = t.model().params().values;
    }
    const std::string path = test::temp_dir("ckpt_resume") + "/step_3.h5";
    {
      Trainer t(cfg);
      for (int s = 0; s < 3; ++s) got.push_back(t.step().loss);
      write_checkpoint(path, t.checkpoint_state());
    }
    Trainer t(cfg);
    t.restore(read_checkpoint(path));
    EXPECT_EQ(t.tokens_seen(), 3 * 2 * 32);
    while (t.next_step() < 6) got.push_back(t.step().loss);
    EXPECT_EQ(got, want);
    EXPECT_TRUE(t.model().params().values == want_params);
  }
}

TEST(Checkpoint, RestoreRefusesAnotherModel) {
  Trainer small(tiny());
  const CheckpointState s = small.checkpoint_state();
  Trainer wide(tiny({"model.d_model=64"}));
  const std::string msg = test::error_of([&] { wide.restore(s); });
  EXPECT_NE(msg.find("wte"), std::string::npos) << msg;
}

TEST(Checkpoint, ConfigChangesThatAlterTheModelOrDataAreRefused) {
  const Config a = tiny();
  Config b = parse_config(a.yaml, {"train.steps=50", "train.lr=1e-3", "log.every=5",
                                   "checkpoint.every=10", "parallel.zero=1"});
  const auto accepted = check_resume_config(a.yaml, b.yaml, "ck.h5");
  ASSERT_EQ(accepted.size(), 5u);
  EXPECT_EQ(accepted[0], "checkpoint.every: 0 -> 10");
  for (const std::string& bad : {std::string("model.d_model=64"), std::string("data.seq_len=16"),
                                 std::string("run.seed=7"), std::string("attention.pattern=dense")}) {
    const Config c = parse_config(a.yaml, {bad, "train.steps=50"});
    const std::string msg = test::error_of([&] { check_resume_config(a.yaml, c.yaml, "ck.h5"); });
    const std::string key = bad.substr(0, bad.find('='));
    EXPECT_NE(msg.find("'ck.h5'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(key + ": "), std::string::npos) << msg;
    EXPECT_EQ(msg.find("train.steps"), std::string::npos) << "harmless keys are not listed: " << msg;
  }
}

// A run may move between CPU and GPU (and between precisions), and a checkpoint from before
// run.device existed resumes: the key is absent there.
TEST(Checkpoint, ResumeMayChangeTheDevice) {
  const Config a = tiny();
  const Config gpu = parse_config(a.yaml, {"run.device=cuda", "train.precision=bf16"});
  const auto accepted = check_resume_config(a.yaml, gpu.yaml, "ck.h5");
  ASSERT_EQ(accepted.size(), 2u);
  EXPECT_EQ(accepted[0], "run.device: cpu -> cuda");
  EXPECT_EQ(accepted[1], "train.precision: fp32 -> bf16");
  std::string old_yaml = a.yaml;
  const size_t at = old_yaml.find("  device: cpu\n");
  ASSERT_NE(at, std::string::npos) << old_yaml;
  old_yaml.erase(at, std::string("  device: cpu\n").size());
  EXPECT_EQ(check_resume_config(old_yaml, a.yaml, "ck.h5"),
            std::vector<std::string>{"run.device: (unset) -> cpu"});
}

TEST(Checkpoint, WriterKeepsTheNewestAndMovesLatest) {
  const std::string dir = test::temp_dir("ckpt_writer");
  Trainer t(tiny());
  {
    CheckpointWriter w(dir, 2);
    for (int s = 1; s <= 4; ++s) {
      t.step();
      char name[32];
      std::snprintf(name, sizeof name, "/step_%08d.h5", s);
      w.write(t.checkpoint_state(), dir + name);
    }
    w.wait();
    EXPECT_GT(w.last_bytes(), 0);
  }
  const auto found = list_checkpoints(dir);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].first, 4);
  EXPECT_EQ(found[1].first, 3);
  EXPECT_EQ(read_file(dir + "/latest"), "step_00000004.h5\n");
  EXPECT_EQ(read_checkpoint(found[0].second).step, 4);
  // A failed write surfaces at the next wait, naming the file.
  CheckpointWriter bad(dir, 2);
  bad.write(t.checkpoint_state(), dir + "/missing/step_00000009.h5");
  const std::string msg = test::error_of([&] { bad.wait(); });
  EXPECT_NE(msg.find("step_00000009.h5"), std::string::npos) << msg;
}

TEST(Checkpoint, AutoSkipsADamagedCheckpoint) {
  Config cfg = tiny();
  cfg.run.out_dir = test::temp_dir("ckpt_auto");
  cfg.checkpoint.resume = "auto";
  EXPECT_FALSE(find_resume_point(cfg).has_value()) << "no checkpoint yet";
  Trainer t(cfg);
  make_dirs(checkpoint_dir(cfg));
  t.step();
  write_checkpoint(checkpoint_path(cfg, 1), t.checkpoint_state());
  t.step();
  write_checkpoint(checkpoint_path(cfg, 2), t.checkpoint_state());
  fs::resize_file(checkpoint_path(cfg, 2), fs::file_size(checkpoint_path(cfg, 2)) / 2);
  testing::internal::CaptureStderr();
  const auto rp = find_resume_point(cfg);
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(rp.has_value());
  EXPECT_EQ(rp->state.step, 1);
  EXPECT_NE(err.find("step_00000002.h5"), std::string::npos) << err;
  // An explicit path to a damaged file is an error naming it.
  cfg.checkpoint.resume = checkpoint_path(cfg, 2);
  const std::string msg = test::error_of([&] { find_resume_point(cfg); });
  EXPECT_NE(msg.find("step_00000002.h5"), std::string::npos) << msg;
}

TEST(Checkpoint, ResumedMetricsReadAsOneRun) {
  const std::string path = test::temp_dir("ckpt_metrics") + "/metrics.jsonl";
  StepStats s;
  {
    MetricsLog m(path);
    for (s.step = 1; s.step <= 5; ++s.step) m.write_step(s, 0, 0, 0);
    m.write_eval(5, {});
  }
  {
    // Resumed from the checkpoint of step 3: the lines of steps 4 and 5, which the interrupted
    // run logged after it, are dropped.
    MetricsLog m(path, 3);
    for (s.step = 4; s.step <= 6; ++s.step) m.write_step(s, 0, 0, 0);
  }
  const auto rows = test::read_metrics(fs::path(path).parent_path().string());
  ASSERT_EQ(rows.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(int(rows[i]["step"]), i + 1);
}

}  // namespace
}  // namespace longctx
