// End to end: `longctx sweep` trains tiny real variants as child processes and reports what
// their metrics.jsonl say; a rerun skips finished runs; a bad variant stops everything before
// any run; a run that fails at run time is reported failed while the others still run.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/fs.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A few steps of a tiny model: each run takes well under a second.
const char* kBase = R"(
run: {name: tiny, out_dir: runs/tiny, seed: 3}
model: {vocab_size: 32, d_model: 32, n_layer: 2, n_head: 2, d_ff: 64, max_seq_len: 64}
attention: {pattern: flash, block_size: 16}
data: {source: synthetic, seq_len: 32, synthetic: {task: copy, alphabet: 8}}
train: {micro_batch: 2, steps: 4, warmup: 1, threads: 1}
log: {every: 1}
)";

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

// A sweep directory with base.yaml and sweep.yaml (out_dir: DIR/out).
std::string make_sweep(const std::string& name, const std::string& variants,
                       const std::string& overrides = "{train.steps: 5}") {
  const std::string dir = test::temp_dir("e2e_sweep_" + name);
  write(dir + "/base.yaml", kBase);
  write(dir + "/sweep.yaml", str("base: base.yaml\nout_dir: ", dir, "/out\noverrides: ", overrides,
                                 "\nvariants:\n", variants));
  return dir;
}

std::map<std::string, json> report_rows(const std::string& out_dir) {
  std::map<std::string, json> rows;
  std::istringstream in(read_file(out_dir + "/report.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    rows[j["name"].get<std::string>()] = j;
  }
  return rows;
}

std::vector<json> train_lines(const std::string& run_dir) {
  std::vector<json> out;
  for (const json& j : test::read_metrics(run_dir))
    if (!j.contains("eval") && j.contains("loss")) out.push_back(j);
  return out;
}

const char* kTwoVariants =
    "  flash: {attention.pattern: flash}\n"
    "  longformer: {attention.pattern: longformer, attention.window: 8, "
    "attention.global_tokens: [0, 16]}\n";

TEST(SweepCli, ReportMatchesTheRunsAndARerunSkipsThem) {
  const std::string dir = make_sweep("two", kTwoVariants);
  int code = 0;
  std::string out = test::run_cli("sweep " + dir + "/sweep.yaml", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_CONTAINS(out, "[1/2] flash ... done in");
  EXPECT_CONTAINS(out, "[2/2] longformer ... done in");

  const std::map<std::string, json> rows = report_rows(dir + "/out");
  ASSERT_EQ(rows.size(), 2u);
  const std::string md = read_file(dir + "/out/report.md");
  for (const char* name : {"flash", "longformer"}) {
    const std::string run_dir = str(dir, "/out/", name);
    const json& row = rows.at(name);
    EXPECT_EQ(row["status"], "ok");
    EXPECT_EQ(row["run_dir"], run_dir);
    // The run trained with the sweep's keys, in its own directory.
    const std::string cfg = read_file(run_dir + "/config.yaml");
    EXPECT_CONTAINS(cfg, str("name: \"", name, "\""));
    EXPECT_CONTAINS(cfg, str("out_dir: \"", run_dir, "\""));
    EXPECT_CONTAINS(cfg, str("pattern: ", name));
    EXPECT_CONTAINS(cfg, "steps: 5");
    // Every number against the run's own metrics.jsonl.
    const std::vector<json> lines = train_lines(run_dir);
    ASSERT_EQ(lines.size(), 5u);  // log.every 1, 5 steps
    EXPECT_EQ(row["steps"], 5);
    EXPECT_EQ(row["final_loss"].get<double>(), lines.back()["loss"].get<double>());
    std::vector<double> rates, peaks;
    for (size_t i = 1; i < lines.size(); ++i) rates.push_back(lines[i]["tokens_per_s"]);
    for (const json& l : lines) peaks.push_back(l["peak_rss_mb"]);
    std::sort(rates.begin(), rates.end());
    EXPECT_DOUBLE_EQ(row["tokens_per_s"].get<double>(), 0.5 * (rates[1] + rates[2]));
    EXPECT_EQ(row["peak_rss_mb"].get<double>(), *std::max_element(peaks.begin(), peaks.end()));
    EXPECT_GT(row["wall_s"].get<double>(), 0.0);
    EXPECT_CONTAINS(md, str("| ", name, " | ok | attention.pattern=", name));
    char loss[32];
    std::snprintf(loss, sizeof loss, "%.4f", lines.back()["loss"].get<double>());
    EXPECT_CONTAINS(md, str(" | ", loss, " | "));
    EXPECT_TRUE(fs::exists(run_dir + "/train.log"));
  }
  EXPECT_CONTAINS(md, "2 runs: 2 ok, 0 cached, 0 failed.");
  // Every plot the report lists exists.
  std::istringstream md_lines(md);
  for (std::string line; std::getline(md_lines, line);) {
    if (line.rfind("- [plots/", 0) != 0) continue;
    const std::string file = line.substr(3, line.find(']') - 3);
    EXPECT_TRUE(fs::is_regular_file(dir + "/out/" + file)) << file;
  }

  // Rerun: both cached; their logs and metrics untouched.
  const auto log_time = fs::last_write_time(dir + "/out/flash/metrics.jsonl");
  out = test::run_cli("sweep " + dir + "/sweep.yaml", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_CONTAINS(out, "[1/2] flash ... cached");
  EXPECT_CONTAINS(out, "[2/2] longformer ... cached");
  EXPECT_EQ(fs::last_write_time(dir + "/out/flash/metrics.jsonl"), log_time);
  EXPECT_EQ(report_rows(dir + "/out").at("flash")["status"], "cached");
  EXPECT_EQ(report_rows(dir + "/out").at("flash")["final_loss"], rows.at("flash")["final_loss"]);

  // A changed variant reruns that variant only; --force reruns the other too.
  write(dir + "/sweep.yaml", str("base: base.yaml\nout_dir: ", dir,
                                 "/out\noverrides: "
                                 "{train.steps: 5}\nvariants:\n  flash: {attention.pattern: "
                                 "flash, train.lr: 1.0e-3}\n  longformer: {attention.pattern: "
                                 "longformer, attention.window: 8, attention.global_tokens: "
                                 "[0, 16]}\n"));
  out = test::run_cli("sweep " + dir + "/sweep.yaml", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_CONTAINS(out, "[1/2] flash ... done in");
  EXPECT_CONTAINS(out, "[2/2] longformer ... cached");
  out = test::run_cli("sweep " + dir + "/sweep.yaml --force --only longformer", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_CONTAINS(out, "[1/2] flash ... cached");
  EXPECT_CONTAINS(out, "[2/2] longformer ... done in");
}

TEST(SweepCli, AnUnknownKeyStopsTheSweepBeforeAnyRun) {
  const std::string dir = make_sweep("badkey",
                                     "  flash: {attention.pattern: flash}\n"
                                     "  typo: {attention.windw: 8}\n");
  int code = 0;
  const std::string out = test::run_cli("sweep " + dir + "/sweep.yaml", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_CONTAINS(out, str("sweep '", dir, "/sweep.yaml'"));
  EXPECT_CONTAINS(out, "variant 'typo'");
  EXPECT_CONTAINS(out, "unknown key 'attention.windw'");
  EXPECT_FALSE(fs::exists(dir + "/out")) << "nothing may run, or be written";
}

TEST(SweepCli, ARunThatFailsIsReportedAndTheOthersStillRun) {
  // A dataset path that does not exist is a valid config; it fails when the run opens it.
  const std::string dir = make_sweep("fails",
                                     "  missing: {data.source: hdf5, data.train: "
                                     "/nonexistent/dataset}\n"
                                     "  flash: {attention.pattern: flash}\n");
  int code = 0;
  const std::string out = test::run_cli("sweep " + dir + "/sweep.yaml", &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_CONTAINS(out,
                  "[1/2] missing ... FAILED (exit 1): error: no dataset at "
                  "'/nonexistent/dataset'");
  EXPECT_CONTAINS(out, "[2/2] flash ... done in");
  const std::map<std::string, json> rows = report_rows(dir + "/out");
  EXPECT_EQ(rows.at("missing")["status"], "failed");
  EXPECT_EQ(rows.at("missing")["exit_code"], 1);
  EXPECT_CONTAINS(rows.at("missing")["failure"].get<std::string>(), "/nonexistent/dataset");
  EXPECT_EQ(rows.at("flash")["status"], "ok");
  const std::string md = read_file(dir + "/out/report.md");
  EXPECT_CONTAINS(md, "| missing | failed |");
  EXPECT_CONTAINS(md, "2 runs: 1 ok, 0 cached, 1 failed.");

  // A failed run is not cached: the next sweep tries it again.
  const std::string again = test::run_cli("sweep " + dir + "/sweep.yaml", &code);
  EXPECT_EQ(code, 1);
  EXPECT_CONTAINS(again, "[1/2] missing ... FAILED");
  EXPECT_CONTAINS(again, "[2/2] flash ... cached");
}

TEST(SweepCli, ALauncherThatCannotStartFailsEachRun) {
  const std::string dir = make_sweep("launcher", "  flash: {}\n");
  int code = 0;
  // mpirun rejects the option (or is missing): either way the run fails with the reason.
  const std::string out =
      test::run_cli("sweep " + dir + "/sweep.yaml --mpirun '--no-such-mpirun-option -np 1'", &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_CONTAINS(out, "[1/1] flash ... FAILED (exit ");
  EXPECT_EQ(report_rows(dir + "/out").at("flash")["status"], "failed");
}

TEST(SweepCli, DryRunPrintsThePlanAndWritesNothing) {
  const std::string dir = make_sweep("dry", kTwoVariants);
  int code = 0;
  const std::string out = test::run_cli("sweep " + dir + "/sweep.yaml --dry-run", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_CONTAINS(out, "[1/2] flash: would run");
  EXPECT_CONTAINS(out, "train " + dir +
                           "/base.yaml --set train.steps=5 --set "
                           "attention.pattern=flash");
  EXPECT_CONTAINS(out, "--set 'attention.global_tokens=[0, 16]'");
  EXPECT_FALSE(fs::exists(dir + "/out"));
}

TEST(SweepCli, UsageErrors) {
  int code = 0;
  std::string out = test::run_cli("sweep", &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "sweep needs a sweep FILE");
  out = test::run_cli("sweep --help", &code);
  EXPECT_EQ(code, 0);
  EXPECT_CONTAINS(out, "usage: longctx sweep FILE");
  const std::string dir = make_sweep("usage", "  flash: {}\n");
  out = test::run_cli("sweep " + dir + "/sweep.yaml --only nope", &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "--only: 'nope' is neither a variant nor a run");
  out = test::run_cli("sweep " + dir + "/sweep.yaml --bogus", &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "unknown option '--bogus' for sweep");
}

}  // namespace
}  // namespace longctx
