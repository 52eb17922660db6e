// What a run directory holds, what clearing it removes (a run's files, never the user's), and
// which files count as a killed writer's temporaries.
#include "trainer/run_dir.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/test_util.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

void touch(const std::string& path) { std::ofstream(path) << "x"; }

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    names.push_back(fs::relative(e.path(), dir).string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(RunDirFiles, DescribeSaysWhatTheDirectoryHolds) {
  const std::string dir = test::temp_dir("rundir_unit_describe");
  EXPECT_FALSE(inspect_run_dir(dir).holds_run());
  EXPECT_FALSE(inspect_run_dir(dir + "/missing").holds_run());
  touch(dir + "/notes.txt");
  EXPECT_FALSE(inspect_run_dir(dir).holds_run()) << "only a run's own files count";
  touch(dir + "/metrics.jsonl");
  EXPECT_EQ(inspect_run_dir(dir).describe(), "metrics.jsonl");
  fs::create_directories(dir + "/checkpoints");
  touch(dir + "/checkpoints/step_00000040.h5");
  EXPECT_EQ(inspect_run_dir(dir).describe(), "metrics.jsonl and a checkpoint at step 40");
  touch(dir + "/config.yaml");
  touch(dir + "/checkpoints/step_00000120.h5");
  touch(dir + "/checkpoints/step_00000080.h5");
  const RunDirContents c = inspect_run_dir(dir);
  EXPECT_TRUE(c.holds_run());
  EXPECT_EQ(c.describe(), "config.yaml, metrics.jsonl and 3 checkpoints (steps 40 to 120)");
}

TEST(RunDirFiles, ClearRemovesARunsFilesAndNothingElse) {
  const std::string dir = test::temp_dir("rundir_unit_clear");
  fs::create_directories(dir + "/checkpoints");
  for (const char* f : {"config.yaml", "metrics.jsonl", "summary.json", "notes.txt",
                        "train.log", "checkpoints/step_00000001.h5", "checkpoints/latest",
                        "checkpoints/step_00000002.h5.tmp.123", "checkpoints/mine.h5"})
    touch(dir + "/" + f);
  clear_run_dir(dir);
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"checkpoints", "checkpoints/mine.h5",
                                                    "notes.txt", "train.log"}));
  fs::remove(dir + "/checkpoints/mine.h5");
  touch(dir + "/checkpoints/step_00000001.h5");
  clear_run_dir(dir);
  EXPECT_EQ(listing(dir), (std::vector<std::string>{"notes.txt", "train.log"}))
      << "an emptied checkpoints/ goes too";
}

TEST(RunDirFiles, OnlyAWritersTemporariesAreStale) {
  const std::string dir = test::temp_dir("rundir_unit_tmp");
  fs::create_directories(dir + "/checkpoints");
  for (const char* f : {"metrics.jsonl.tmp.99", "checkpoints/step_00000003.h5.tmp.4242",
                        "notes.tmp.txt", "a.tmp.", ".tmp.12", "b.tmp.12x", "checkpoints/latest"})
    touch(dir + "/" + f);
  std::vector<std::string> removed = remove_stale_temporaries(dir);
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{dir + "/checkpoints/step_00000003.h5.tmp.4242",
                                               dir + "/metrics.jsonl.tmp.99"}));
  EXPECT_EQ(listing(dir), (std::vector<std::string>{".tmp.12", "a.tmp.", "b.tmp.12x",
                                                    "checkpoints", "checkpoints/latest",
                                                    "notes.tmp.txt"}));
}

}  // namespace
}  // namespace longctx
