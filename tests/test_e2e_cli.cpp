// The `longctx` command end to end: training runs, determinism, and the errors a user sees.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/cuda_env.h"
#include "core/fs.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

const std::string kSrc = LONGCTX_SOURCE_DIR;

using test::read_metrics;
using test::run_cli;

// A small, fast variant of the quickstart.
std::string small_run(const std::string& dir) {
  return kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir +
         " --set model.n_layer=2 --set data.seq_len=64 --set train.micro_batch=2" +
         " --set train.steps=6 --set log.every=1";
}

TEST(Cli, HelpListsCommands) {
  int code = 0;
  const std::string out = run_cli("--help", &code);
  EXPECT_EQ(code, 0);
  for (const char* cmd : {"train", "bench attention", "bench train"})
    EXPECT_NE(out.find(cmd), std::string::npos) << cmd;
  EXPECT_EQ((run_cli("train --help", &code), code), 0);
  EXPECT_EQ((run_cli("bench attention --help", &code), code), 0);
  EXPECT_EQ((run_cli("bench train --help", &code), code), 0);
  run_cli("frobnicate", &code);
  EXPECT_EQ(code, 2);
}

TEST(Cli, TrainWritesRunDirectory) {
  const std::string dir = test::temp_dir("train_dir");
  int code = 0;
  const std::string out = run_cli("train " + small_run(dir), &code);
  ASSERT_EQ(code, 0) << out;
  const auto rows = read_metrics(dir);
  ASSERT_EQ(rows.size(), 6u);
  for (const char* k : {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_ms",
                        "peak_rss_mb"})
    EXPECT_TRUE(rows[0].contains(k)) << k;
  EXPECT_EQ(rows.back()["tokens"].get<int64_t>(), 6 * 2 * 64);
  // The merged config records the overrides and reloads as the same run.
  const std::string merged = read_file(dir + "/config.yaml");
  EXPECT_NE(merged.find("n_layer: 2"), std::string::npos) << merged;
  EXPECT_NE(out.find("ETA"), std::string::npos);
}

TEST(Cli, SameSeedSameLosses) {
  const std::string a = test::temp_dir("det_a"), b = test::temp_dir("det_b");
  int c1 = 0, c2 = 0;
  run_cli("train " + small_run(a), &c1);
  run_cli("train " + small_run(b), &c2);
  ASSERT_EQ(c1, 0);
  ASSERT_EQ(c2, 0);
  const auto ra = read_metrics(a), rb = read_metrics(b);
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(ra[i]["loss"].get<double>(), rb[i]["loss"].get<double>()) << "step " << i;
    EXPECT_EQ(ra[i]["grad_norm"].get<double>(), rb[i]["grad_norm"].get<double>());
  }
  // A different seed is a different run (the test above could not pass by accident).
  const std::string c = test::temp_dir("det_c");
  run_cli("train " + small_run(c) + " --set run.seed=99", &c1);
  EXPECT_NE(read_metrics(c)[0]["loss"].get<double>(), ra[0]["loss"].get<double>());
}

// The quickstart as the README runs it. The copy task's targets are the copied half only; a
// model that ignores the context cannot do better than ln(16) = 2.77 nats per target (uniform
// over the alphabet), and at initialisation the loss is about ln(256) = 5.5. Below 1.0 means
// the model has learned to look back and copy.
TEST(Cli, QuickstartLearnsToCopy) {
  const std::string dir = test::temp_dir("quickstart");
  int code = 0;
  const std::string out =
      run_cli("train " + kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir, &code);
  ASSERT_EQ(code, 0) << out;
  const auto rows = read_metrics(dir);
  ASSERT_FALSE(rows.empty());
  EXPECT_GT(rows.front()["loss"].get<double>(), 5.0);
  EXPECT_LT(rows.back()["loss"].get<double>(), 1.0) << out;
}

struct BadConfig {
  const char* override_or_text;
  const char* must_mention;
};

TEST(Cli, BadConfigsExitTwoNamingTheKey) {
  const std::string dir = test::temp_dir("bad");
  const std::vector<BadConfig> cases = {
      {"--set model.d_modle=8", "model.d_modle"},
      {"--set train.lr=fast", "train.lr"},
      {"--set attention.pattern=sparse", "attention.pattern"},
      {"--set model.n_head=3", "model.n_head"},
      {"--set data.seq_len=8192", "data.seq_len"},
  };
  for (const auto& c : cases) {
    int code = 0;
    const std::string out =
        run_cli("train " + kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir + " " +
                c.override_or_text,
            &code);
    EXPECT_EQ(code, 2) << c.override_or_text << ": " << out;
    EXPECT_NE(out.find(c.must_mention), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one message: " << out;
  }
}

// Where no GPU can be used, asking for one ends with one message that says why; bf16 on the CPU
// is a config error naming the key that would allow it.
TEST(Cli, GpuRequestsWithoutAGpuSayWhy) {
  const std::string dir = test::temp_dir("no_gpu");
  const std::string train = "train " + kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir;
  int code = 0;
  std::string out = run_cli(train + " --set train.precision=bf16", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("'run.device: cuda'"), std::string::npos) << out;
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
#if LONGCTX_HAVE_CUDA_KERNELS
  const std::string why = "no CUDA device is visible";
#else
  const std::string why = "built without CUDA kernels";
#endif
  for (const std::string& cmd :
       {train + " --set run.device=cuda",
        std::string("bench attention --device cuda --n 64 --pattern flash")}) {
    out = run_cli(cmd, &code);
    EXPECT_NE(code, 0) << cmd << ": " << out;
    EXPECT_NE(out.find(why), std::string::npos) << cmd << ": " << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one message: " << out;
  }
}

TEST(Cli, MissingOrMalformedFileNamesIt) {
  const std::string dir = test::temp_dir("malformed");
  int code = 0;
  std::string out = run_cli("train " + dir + "/nope.yaml", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find(dir + "/nope.yaml"), std::string::npos) << out;

  const std::string bad = dir + "/bad.yaml";
  std::ofstream(bad) << "model:\n  d_model: 8\n  n_head: [1, 2\n";
  out = run_cli("train " + bad, &code);
  EXPECT_EQ(code, 2) << out;  // a bad config, as --help says
  EXPECT_NE(out.find(bad), std::string::npos) << out;
  EXPECT_NE(out.find("line"), std::string::npos) << out;

  // A config that sets nothing does not train the defaults into runs/quickstart.
  const std::string empty = dir + "/empty.yaml";
  std::ofstream(empty) << "# nothing yet\ntrain:\n";
  out = run_cli("train " + empty, &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("config '" + empty + "' sets no key"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one message: " << out;
}

}  // namespace
}  // namespace longctx
