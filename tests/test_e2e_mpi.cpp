// `longctx train` under mpirun through launch/mpirun.sh: one run directory written by rank 0,
// communication reported per step, and a failing rank ending the whole job with its message.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

const std::string kSrc = LONGCTX_SOURCE_DIR;

std::string launch(const std::string& env, int np, const std::string& args, int* code) {
  std::string out;
  *code = test::run_command(env + " LONGCTX_BIN=" + LONGCTX_BINARY + " OMP_NUM_THREADS=1 " +
                                kSrc + "/launch/mpirun.sh " + std::to_string(np) + " " + args,
                            &out);
  return out;
}

std::string small_run(const std::string& dir) {
  return "train " + kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir +
         " --set model.n_layer=2 --set data.seq_len=64 --set train.micro_batch=2"
         " --set train.steps=4 --set log.every=1";
}

TEST(Mpi, TwoRanksTrainIntoOneRunDirectory) {
  const std::string dir = test::temp_dir("mpi_run");
  int code = 0;
  const std::string out = launch("", 2, small_run(dir) + " --set parallel.zero=1", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("dp 2 x sp 1"), std::string::npos) << out;
  EXPECT_NE(out.find("ZeRO-1"), std::string::npos) << out;
  const auto rows = test::read_metrics(dir);
  ASSERT_EQ(rows.size(), 4u) << "rank 0 alone writes metrics";
  EXPECT_EQ(int64_t(rows[0]["tokens"]), 2 * 2 * 64) << "tokens of both replicas";
  EXPECT_GT(int64_t(rows[0]["comm_bytes"]), 0);
  EXPECT_GE(double(rows[0]["comm_ms"]), 0.0);
}

// bench comm on 4 ranks: our ring collectives send exactly the optimal bytes, Ulysses moves
// 4(N−1)/N² of the activations per pass, forward and backward, and a window of 256 on chunks of 256
// needs 2 ring exchanges, not N − 1 = 3.
TEST(Mpi, BenchCommCountsWhatTheAlgorithmsMove) {
  int code = 0;
  const std::string out = launch("", 4, "bench comm --sizes 4K,64K --repeats 2 --attention 1024 --json", &code);
  ASSERT_EQ(code, 0) << out;
  int ring_rows = 0, attention_rows = 0;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(int(j["ranks"]), 4);
    const std::string op = j["op"];
    if (j["impl"] == "ring") {
      ++ring_rows;
      EXPECT_DOUBLE_EQ(double(j["algo_ratio"]), 1.0) << line;
    } else if (op == "ulysses_fwd" || op == "ulysses_bwd") {
      ++attention_rows;
      EXPECT_DOUBLE_EQ(double(j["expected_share"]), 4.0 * 3 / 16);
      EXPECT_DOUBLE_EQ(double(j["activation_share"]), 4.0 * 3 / 16) << line;
    } else if (op == "ring_causal_fwd" || op == "ring_window_fwd") {
      ++attention_rows;
      EXPECT_EQ(int(j["exchanges"]), int(j["expected_exchanges"])) << line;
      EXPECT_EQ(int(j["expected_exchanges"]), op == "ring_causal_fwd" ? 3 : 2) << line;
    }
  }
  EXPECT_EQ(ring_rows, 2 * 3) << out;
  EXPECT_EQ(attention_rows, 4) << out;
}

// Sequence parallel through the binary: the same losses as one process, for both modes.
TEST(Mpi, SequenceParallelRunsMatchOneProcess) {
  const std::string one = test::temp_dir("mpi_sp1");
  int code = 0;
  std::string out = test::run_cli(small_run(one) + " --set data.seq_len=128", &code);
  ASSERT_EQ(code, 0) << out;
  const auto want = test::read_metrics(one);
  for (const char* mode : {"ulysses", "ring"}) {
    const std::string dir = test::temp_dir(std::string("mpi_sp_") + mode);
    out = launch("", 2, small_run(dir) + " --set data.seq_len=128 --set parallel.sp=2" +
                            " --set parallel.sp_mode=" + mode, &code);
    ASSERT_EQ(code, 0) << out;
    EXPECT_NE(out.find("dp 1 x sp 2"), std::string::npos) << out;
    const auto got = test::read_metrics(dir);
    ASSERT_EQ(got.size(), want.size());
    for (size_t s = 0; s < want.size(); ++s)
      EXPECT_NEAR(double(got[s]["loss"]), double(want[s]["loss"]), 1e-5 * double(want[s]["loss"]))
          << mode << " step " << s;
  }
}

TEST(Mpi, AFailingRankEndsTheJobWithItsMessage) {
  const std::string dir = test::temp_dir("mpi_fail");
  int code = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out = launch("LONGCTX_TEST_FAIL=1:2", 2, small_run(dir), &code);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("error (rank 1 of 2): injected failure"), std::string::npos) << out;
  EXPECT_LT(secs, 60.0) << "the other rank must not hang in a collective";
}

// A corrupt shard that only one rank reads: its id beyond the vocabulary (the shard forged to
// claim a smaller vocabulary than its ids use) ends the whole job, naming the rank and the shard.
TEST(Mpi, ABadShardSeenByOneRankEndsTheJob) {
  const std::string dir = test::temp_dir("mpi_badshard");
  ShardAttrs wide = test::byte_attrs();
  wide.vocab_size = 300;
  std::vector<std::vector<test::Doc>> shards;
  for (uint64_t i = 0; i < 4; ++i) shards.push_back(test::make_docs(i + 1, 10, 250, 120));
  shards[2][5].assign(40, 7);
  shards[2][5][11] = 290;
  test::write_dataset(dir, wide, shards);
  Manifest m = read_manifest(dir);
  m.attrs.vocab_size = 259;
  for (ShardEntry& e : m.shards) {
    test::set_int_attr(dir + "/" + e.name, "vocab_size", 259);
    e.checksum = hash_file(dir + "/" + e.name);
  }
  write_manifest(dir, m);
  int code = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out =
      launch("", 2, small_run(test::temp_dir("mpi_badshard_run")) +
                        " --set data.source=hdf5 --set data.train=" + dir +
                        " --set model.vocab_size=259 --set train.steps=40", &code);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("error (rank "), std::string::npos) << out;
  EXPECT_NE(out.find("shard_00002.h5"), std::string::npos) << out;
  EXPECT_NE(out.find("290"), std::string::npos) << out;
  EXPECT_LT(secs, 60.0) << "the other rank must not hang in a collective";
}

TEST(Mpi, SpMustDivideTheProcesses) {
  int code = 0;
  const std::string out = launch("", 3, small_run(test::temp_dir("mpi_sp")) +
                                            " --set parallel.sp=2", &code);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("'parallel.sp' (2) must divide the number of processes (3)"),
            std::string::npos) << out;
}

}  // namespace
}  // namespace longctx
