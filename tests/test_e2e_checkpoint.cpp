// Checkpoints through the `longctx train` binary: train.stop_after then resume: auto reproduces
// the uninterrupted run's metrics exactly and metrics.jsonl reads as one run; SIGTERM mid-run
// writes a checkpoint and exits 0; a process killed with SIGKILL while writing checkpoints
// leaves only whole ones, and auto resumes from the newest; a damaged checkpoint is named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/fs.h"
#include "tests/test_util.h"
#include "trainer/checkpoint_file.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

const std::string kSrc = LONGCTX_SOURCE_DIR;

// A small quickstart run with a constant learning rate, so that train.steps does not shape the
// schedule and runs of different lengths share their steps.
std::string small_run(const std::string& dir, int steps) {
  return "train " + kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir +
         " --set model.n_layer=2 --set model.d_model=64 --set model.n_head=2 --set model.d_ff=128"
         " --set data.seq_len=64 --set train.micro_batch=2 --set train.warmup=0"
         " --set train.min_lr=3.0e-4 --set train.lr=3.0e-4 --set log.every=1 --set train.steps=" +
         std::to_string(steps);
}

void expect_same_metrics(const std::vector<nlohmann::json>& got,
                         const std::vector<nlohmann::json>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(int(got[i]["step"]), int(want[i]["step"]));
    EXPECT_EQ(double(got[i]["loss"]), double(want[i]["loss"])) << "step " << i;
    EXPECT_EQ(double(got[i]["grad_norm"]), double(want[i]["grad_norm"])) << "step " << i;
    EXPECT_EQ(int64_t(got[i]["tokens"]), int64_t(want[i]["tokens"])) << "step " << i;
  }
}

TEST(CheckpointCli, StopAfterThenResumeEqualsOneRun) {
  const std::string one = test::temp_dir("ckpt_cli_one"), two = test::temp_dir("ckpt_cli_two");
  int code = 0;
  std::string out = test::run_cli(small_run(one, 8), &code);
  ASSERT_EQ(code, 0) << out;
  out = test::run_cli(small_run(two, 8) + " --set train.stop_after=5 --set checkpoint.every=2", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("stopped after step 5 (train.stop_after)"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(two + "/checkpoints/step_00000004.h5"));
  EXPECT_TRUE(fs::exists(two + "/checkpoints/step_00000005.h5"));
  EXPECT_EQ(read_file(two + "/checkpoints/latest"), "step_00000005.h5\n");
  EXPECT_EQ(test::read_metrics(two).size(), 5u);
  out = test::run_cli(small_run(two, 8) + " --set checkpoint.every=2 --set checkpoint.resume=auto",
                      &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("resumed from " + two + "/checkpoints/step_00000005.h5 at step 5"),
            std::string::npos) << out;
  expect_same_metrics(test::read_metrics(two), test::read_metrics(one));
  // A change to the model is refused, naming the key and both values.
  out = test::run_cli(small_run(two, 8) + " --set model.d_ff=256 --set checkpoint.resume=auto",
                      &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("model.d_ff: 128 -> 256"), std::string::npos) << out;
}

// Runs `args` in the background, sends `signal` once metrics.jsonl has `lines` lines, and
// returns the output with "exit=N" appended.
std::string interrupt(const std::string& dir, const std::string& args, const char* signal,
                      int lines) {
  const std::string log = dir + ".log";
  const std::string cmd = std::string(LONGCTX_BINARY) + " " + args + " > " + log + " 2>&1 & pid=$!; " +
      "for i in $(seq 1 3000); do n=$(cat " + dir + "/metrics.jsonl 2>/dev/null | wc -l); "
      "[ \"$n\" -ge " + std::to_string(lines) + " ] && break; sleep 0.02; done; "
      "kill -" + signal + " $pid; wait $pid; echo \"exit=$?\" >> " + log;
  std::string out;
  test::run_command(cmd, &out);
  return read_file(log);
}

TEST(CheckpointCli, SigtermWritesACheckpointAndResumes) {
  const std::string dir = test::temp_dir("ckpt_cli_term");
  const std::string out = interrupt(dir, small_run(dir, 100000), "TERM", 3);
  ASSERT_NE(out.find("exit=0"), std::string::npos) << out;
  ASSERT_NE(out.find("stopped by SIGTERM after step "), std::string::npos) << out;
  const int stopped = std::stoi(out.substr(out.find("after step ") + 11));
  EXPECT_GE(stopped, 3);
  // Resume to a few steps past the signal; compare with a run that was never stopped.
  const int total = stopped + 3;
  int code = 0;
  std::string res =
      test::run_cli(small_run(dir, total) + " --set checkpoint.resume=auto", &code);
  ASSERT_EQ(code, 0) << res;
  EXPECT_NE(res.find("changed: train.steps: 100000 -> " + std::to_string(total)), std::string::npos)
      << res;
  const std::string ref = test::temp_dir("ckpt_cli_term_ref");
  res = test::run_cli(small_run(ref, total), &code);
  ASSERT_EQ(code, 0) << res;
  expect_same_metrics(test::read_metrics(dir), test::read_metrics(ref));
}

TEST(CheckpointCli, SigkillWhileWritingLeavesWholeCheckpoints) {
  const std::string dir = test::temp_dir("ckpt_cli_kill");
  // A checkpoint every step, so that the kill likely lands during a write.
  const std::string args = small_run(dir, 100000) + " --set checkpoint.every=1 --set checkpoint.keep=3"
                           " --set model.d_model=256 --set model.d_ff=1024";
  const std::string out = interrupt(dir, args, "KILL", 4);
  ASSERT_NE(out.find("exit=137"), std::string::npos) << out;
  int whole = 0;
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
    EXPECT_NO_THROW(read_checkpoint(e.path().string())) << name << " is damaged";
    ++whole;
  }
  ASSERT_GE(whole, 1);
  int code = 0;
  const std::string res = test::run_cli(
      small_run(dir, 6) + " --set model.d_model=256 --set model.d_ff=1024 "
      "--set checkpoint.resume=auto --set checkpoint.every=1", &code);
  // The run had passed step 6 already (nothing to do) or continues to it.
  ASSERT_EQ(code, 0) << res;
  EXPECT_NE(res.find("resumed from"), std::string::npos) << res;
}

TEST(CheckpointCli, DamagedCheckpointIsNamed) {
  const std::string dir = test::temp_dir("ckpt_cli_bad");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 2) + " --set checkpoint.every=1", &code);
  ASSERT_EQ(code, 0) << out;
  const std::string bad = dir + "/checkpoints/step_00000002.h5";
  test::flip_bit(bad, -1, 6);  // one bit of the middle byte
  out = test::run_cli(small_run(dir, 4) + " --set checkpoint.resume=" + bad, &code);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("step_00000002.h5"), std::string::npos) << out;
  out = test::run_cli(small_run(dir, 4) + " --set checkpoint.resume=auto", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("warning: skipping checkpoint '" + bad + "'"), std::string::npos) << out;
  EXPECT_NE(out.find("step_00000001.h5 at step 1"), std::string::npos) << out;
}

}  // namespace
}  // namespace longctx
