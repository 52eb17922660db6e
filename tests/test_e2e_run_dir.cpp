// The run directory holds one run's history, through the `longctx train` binary: a finished run
// leaves its model for eval, generate and export; training again into a used directory is
// refused unless resuming or forced (which clears it); `resume: auto` over damaged checkpoints
// stops instead of starting over; steps are numbered from 1 in every output; temporaries left by
// a killed writer are removed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/fs.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

const std::string kSrc = LONGCTX_SOURCE_DIR;

std::string small_run(const std::string& dir, int steps) {
  return "train " + kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir +
         " --set model.n_layer=1 --set model.d_model=32 --set model.n_head=2 --set model.d_ff=64"
         " --set data.seq_len=32 --set train.micro_batch=2 --set train.warmup=0 --set log.every=1"
         " --set train.steps=" + std::to_string(steps);
}

std::vector<std::string> checkpoint_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(RunDir, AFinishedRunKeepsItsModelForEvalGenerateAndExport) {
  const std::string dir = test::temp_dir("rundir_final");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 3), &code);  // checkpoint.every: 0
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(checkpoint_names(dir), (std::vector<std::string>{"latest", "step_00000003.h5"}));
  EXPECT_EQ(read_file(dir + "/checkpoints/latest"), "step_00000003.h5\n");
  EXPECT_NE(out.find("the final model, " + dir + "/checkpoints/step_00000003.h5"),
            std::string::npos) << out;
  out = test::run_cli("eval " + dir + " --task ppl --samples 2 --json", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["step"], 3) << out;
  out = test::run_cli("generate " + dir + " --prompt-ids 1,2,3 --max-new 2 --json", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["new_tokens"], 2) << out;
  for (const std::string& src : {dir, dir + "/checkpoints/latest"}) {
    const std::string exported = test::temp_dir("rundir_final_export");
    out = test::run_cli("ckpt export " + src + " --out " + exported, &code);
    ASSERT_EQ(code, 0) << src << ": " << out;
    EXPECT_TRUE(fs::exists(exported + "/model.safetensors")) << src;
  }
  out = test::run_cli("ckpt inspect " + dir + "/checkpoints/latest --json", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["step"], 3) << out;
}

TEST(RunDir, TrainingIntoAUsedDirectoryIsRefusedUnlessForced) {
  const std::string dir = test::temp_dir("rundir_used");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 6) + " --set checkpoint.every=2", &code);
  ASSERT_EQ(code, 0) << out;
  const std::string metrics = read_file(dir + "/metrics.jsonl");
  const std::string config = read_file(dir + "/config.yaml");
  const auto before = checkpoint_names(dir);

  // Another run into the same directory: refused, and nothing in it changes.
  const std::string other = small_run(dir, 4) + " --set train.lr=1e-3";
  out = test::run_cli(other, &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("run directory '" + dir + "' already holds a run"), std::string::npos) << out;
  EXPECT_NE(out.find("3 checkpoints (steps 2 to 6)"), std::string::npos) << out;
  EXPECT_NE(out.find("--force"), std::string::npos) << out;
  EXPECT_EQ(read_file(dir + "/metrics.jsonl"), metrics);
  EXPECT_EQ(read_file(dir + "/config.yaml"), config);
  EXPECT_EQ(checkpoint_names(dir), before);

  // Forced: the old run is cleared, so no checkpoint or metrics line of it survives, and a
  // later auto resume continues the new run.
  std::ofstream(dir + "/notes.txt") << "mine\n";
  out = test::run_cli(other + " --force", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(checkpoint_names(dir), (std::vector<std::string>{"latest", "step_00000004.h5"}));
  EXPECT_EQ(read_file(dir + "/notes.txt"), "mine\n") << "--force removes only a run's files";
  const auto rows = test::read_metrics(dir);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows.back()["step"], 4);
  out = test::run_cli(small_run(dir, 5) + " --set train.lr=1e-3 --set checkpoint.resume=auto",
                      &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("resumed from " + dir + "/checkpoints/step_00000004.h5 at step 4"),
            std::string::npos) << out;
  EXPECT_EQ(test::read_metrics(dir).size(), 5u);

  // --force with resume: auto is a contradiction; so is run.overwrite with it.
  out = test::run_cli(small_run(dir, 5) + " --set checkpoint.resume=auto --force", &code);
  EXPECT_EQ(code, 2) << out;
  out = test::run_cli(small_run(dir, 5) + " --set checkpoint.resume=auto --set run.overwrite=true",
                      &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("run.overwrite"), std::string::npos) << out;
}

TEST(RunDir, RollingBackPastNewerCheckpointsIsRefused) {
  const std::string dir = test::temp_dir("rundir_rollback");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 4) + " --set checkpoint.every=2", &code);
  ASSERT_EQ(code, 0) << out;
  const std::string older = dir + "/checkpoints/step_00000002.h5";
  out = test::run_cli(small_run(dir, 4) + " --set checkpoint.resume=" + older, &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("step_00000004.h5"), std::string::npos) << out;
  // Resuming the same checkpoint into a fresh directory is a new run's start: allowed.
  const std::string fresh = test::temp_dir("rundir_rollback_fresh");
  out = test::run_cli(small_run(fresh, 4) + " --set checkpoint.resume=" + older, &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("at step 2"), std::string::npos) << out;
}

TEST(RunDir, AutoResumeOverOnlyDamagedCheckpointsStopsNamingEach) {
  const std::string dir = test::temp_dir("rundir_damaged");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 2) + " --set checkpoint.every=1", &code);
  ASSERT_EQ(code, 0) << out;
  const std::string a = dir + "/checkpoints/step_00000001.h5",
                    b = dir + "/checkpoints/step_00000002.h5";
  test::flip_bit(a, -1, 6);
  std::filesystem::resize_file(b, 100);
  const std::string metrics = read_file(dir + "/metrics.jsonl");
  const std::string bytes_a = read_file(a);
  out = test::run_cli(small_run(dir, 4) + " --set checkpoint.resume=auto", &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("none reads back whole"), std::string::npos) << out;
  EXPECT_NE(out.find(a + ": "), std::string::npos) << out;
  EXPECT_NE(out.find(b + ": "), std::string::npos) << out;
  EXPECT_EQ(read_file(dir + "/metrics.jsonl"), metrics) << "nothing is overwritten";
  EXPECT_EQ(read_file(a), bytes_a);
  EXPECT_EQ(fs::file_size(b), 100u);
}

TEST(RunDir, AutoSetsAsideDamagedNewerCheckpointsAndLatestFollows) {
  const std::string dir = test::temp_dir("rundir_aside");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 4) + " --set checkpoint.every=2", &code);
  ASSERT_EQ(code, 0) << out;
  test::flip_bit(dir + "/checkpoints/step_00000004.h5", -1, 6);
  out = test::run_cli(small_run(dir, 4) + " --set checkpoint.resume=auto", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("resumed from " + dir + "/checkpoints/step_00000002.h5"), std::string::npos)
      << out;
  // The resumed run rewrote step 4 as a whole file; the damaged one was kept aside.
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_00000004.h5.damaged")) << out;
  EXPECT_EQ(read_file(dir + "/checkpoints/latest"), "step_00000004.h5\n");
  EXPECT_EQ(test::read_metrics(dir).size(), 4u);
}

TEST(RunDir, StepsAreNumberedFromOneEverywhere) {
  const std::string dir = test::temp_dir("rundir_steps");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 3) + " --set log.every=2", &code);
  ASSERT_EQ(code, 0) << out;
  // Logged: the first step, every log.every, the last.
  std::vector<int> steps;
  for (const auto& r : test::read_metrics(dir)) steps.push_back(r["step"]);
  EXPECT_EQ(steps, (std::vector<int>{1, 2, 3}));
  EXPECT_NE(out.find("step 1/3 |"), std::string::npos) << out;
  EXPECT_NE(out.find("step 3/3 |"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_00000003.h5"));

  // A diverging run names the step that diverged, the one after the last line it logged.
  const std::string bad = test::temp_dir("rundir_steps_diverge");
  out = test::run_cli(small_run(bad, 50) + " --set train.lr=1e30 --set train.min_lr=1e30 "
                      "--set train.clip=0", &code);
  ASSERT_EQ(code, 1) << out;
  const size_t at = out.find("training diverged at step ");
  ASSERT_NE(at, std::string::npos) << out;
  const int diverged = std::stoi(out.substr(at + 26));
  const auto rows = test::read_metrics(bad);
  ASSERT_FALSE(rows.empty()) << out;
  EXPECT_EQ(rows.back()["step"].get<int>(), diverged - 1) << out;
  EXPECT_NE(out.find(std::to_string(diverged - 1) + "/50 |"), std::string::npos) << out;
}

TEST(RunDir, TemporariesOfAKilledWriterAreRemovedAtStart) {
  const std::string dir = test::temp_dir("rundir_tmp");
  int code = 0;
  std::string out = test::run_cli(small_run(dir, 2), &code);
  ASSERT_EQ(code, 0) << out;
  const std::string stale = dir + "/checkpoints/step_00000003.h5.tmp.4242";
  std::ofstream(stale) << "half a checkpoint";
  std::ofstream(dir + "/summary.json.tmp.77") << "{";
  out = test::run_cli(small_run(dir, 3) + " --set checkpoint.resume=auto", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_FALSE(fs::exists(stale)) << out;
  EXPECT_FALSE(fs::exists(dir + "/summary.json.tmp.77")) << out;
  EXPECT_NE(out.find("removed " + stale), std::string::npos) << out;
}

}  // namespace
}  // namespace longctx
