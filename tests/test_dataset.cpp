// Datasets: the manifest, reads across shards, globs of shards, every disagreement between a
// shard and its manifest, verify_dataset's problems, and the `longctx data` command.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/fs.h"
#include "data/tokenizer.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using test::Doc;
using test::error_of;

// Three shards (the middle one empty) with labels 0..2 of the names a, b, c.
struct Fixture {
  std::string dir;
  std::vector<std::vector<Doc>> shards;
  std::vector<std::vector<int32_t>> labels;
  std::vector<int32_t> all;  // every token in order

  explicit Fixture(const std::string& name, bool labeled = true) : dir(test::temp_dir(name)) {
    const ShardAttrs a = test::byte_attrs();
    shards = {test::make_docs(1, 40, 256, 500), {}, test::make_docs(2, 25, 256, 900)};
    for (auto& s : shards) {
      for (Doc& d : s) {  // documents as the tokenizer stores them: BOS ... EOS
        d.insert(d.begin(), uint32_t(a.bos_id));
        d.push_back(uint32_t(a.eos_id));
      }
      std::vector<int32_t> l;
      for (size_t i = 0; i < s.size(); ++i) l.push_back(int32_t(i % 3));
      labels.push_back(l);
      const auto c = test::concat(s);
      all.insert(all.end(), c.begin(), c.end());
    }
    if (labeled)
      test::write_dataset(dir, a, shards, labels, {"a", "b", "c"});
    else
      test::write_dataset(dir, a, shards);
  }
  std::string shard(int i) const { return dir + "/shard_0000" + std::to_string(i) + ".h5"; }
  std::string manifest() const { return dir + "/manifest.json"; }
};

TEST(Dataset, ManifestRoundTrip) {
  Fixture f("ds_manifest");
  const Manifest m = read_manifest(f.dir);
  EXPECT_EQ(m.attrs, test::byte_attrs());
  EXPECT_TRUE(m.has_labels);
  EXPECT_EQ(m.labels, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(m.shards.size(), 3u);
  EXPECT_EQ(m.shards[1].tokens, 0);
  EXPECT_EQ(m.tokens(), int64_t(f.all.size()));
  EXPECT_EQ(m.docs(), 65);
  EXPECT_EQ(m.shards[2].checksum, hash_file(f.shard(2)));
}

TEST(Dataset, ReadsAcrossShards) {
  Fixture f("ds_read");
  Dataset ds(f.dir);
  EXPECT_EQ(ds.n_shards(), 3);
  EXPECT_EQ(ds.n_docs(), 65);
  ASSERT_EQ(ds.n_tokens(), int64_t(f.all.size()));
  const int64_t n = ds.n_tokens(), boundary = int64_t(test::concat(f.shards[0]).size());
  std::vector<std::pair<int64_t, int64_t>> reads = {
      {0, n}, {0, 1}, {boundary - 1, 2}, {boundary - 100, 300}, {boundary, 10}, {n - 1, 1},
      {n, 0}};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 50; ++i) {
    const int64_t len = int64_t(rng() % 3000);
    reads.push_back({int64_t(rng() % uint64_t(n - len)), len});
  }
  for (auto [begin, len] : reads) {
    std::vector<int32_t> got(static_cast<size_t>(len));
    ds.read_tokens(begin, len, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), f.all.begin() + begin))
        << "tokens [" << begin << ", " << begin + len << ")";
  }
  int32_t one;
  const std::string msg = error_of([&] { ds.read_tokens(n - 1, 2, &one); });
  EXPECT_CONTAINS(msg, f.dir);
  EXPECT_CONTAINS(msg, "out of range");
}

// The loader reads on its own thread while the main thread may open another dataset.
TEST(Dataset, OpensAndReadsFromTwoThreadsAtOnce) {
  Fixture f("ds_threads");
  std::atomic<int> failures{0};
  auto work = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    try {
      for (int round = 0; round < 100; ++round) {
        Dataset ds(f.dir);
        for (int i = 0; i < 10; ++i) {
          const int64_t len = int64_t(rng() % 2000);
          const int64_t begin = int64_t(rng() % uint64_t(ds.n_tokens() - len));
          std::vector<int32_t> got(static_cast<size_t>(len));
          ds.read_tokens(begin, len, got.data());
          if (!std::equal(got.begin(), got.end(), f.all.begin() + begin)) ++failures;
        }
      }
    } catch (const Error&) {
      ++failures;
    }
  };
  std::thread a(work, 1), b(work, 2);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(Dataset, DocumentsAndLabels) {
  Fixture f("ds_docs");
  Dataset ds(f.dir);
  int64_t at = 0, d = 0;
  for (size_t s = 0; s < f.shards.size(); ++s)
    for (size_t i = 0; i < f.shards[s].size(); ++i, ++d) {
      int64_t first, last;
      ds.doc_range(d, &first, &last);
      EXPECT_EQ(first, at) << "document " << d;
      EXPECT_EQ(last - first, int64_t(f.shards[s][i].size())) << "document " << d;
      EXPECT_EQ(ds.label(d), f.labels[s][i]) << "document " << d;
      int32_t bos;
      ds.read_tokens(first, 1, &bos);
      EXPECT_EQ(bos, ds.attrs().bos_id);
      at = last;
    }
  EXPECT_EQ(at, ds.n_tokens());
  int64_t a, b;
  EXPECT_CONTAINS(error_of([&] { ds.doc_range(65, &a, &b); }), "document 65 is out of range");

  Fixture g("ds_unlabeled", false);
  Dataset plain(g.dir);
  EXPECT_CONTAINS(error_of([&] { plain.label(0); }), "has no labels");
}

TEST(Dataset, GlobOpensASubsetInManifestOrder) {
  Fixture f("ds_glob");
  Dataset ds(f.dir + "/shard_0000[20].h5");
  ASSERT_EQ(ds.n_shards(), 2);
  EXPECT_EQ(ds.manifest().shards[0].name, "shard_00000.h5");
  EXPECT_EQ(ds.n_docs(), 65);
  Dataset last(f.shard(2));
  EXPECT_EQ(last.n_docs(), 25);
  const auto want = test::concat(f.shards[2]);
  std::vector<int32_t> got(want.size());
  last.read_tokens(0, int64_t(got.size()), got.data());
  EXPECT_EQ(got, want);
  int64_t first, end;
  last.doc_range(0, &first, &end);
  EXPECT_EQ(first, 0);
  EXPECT_EQ(last.label(1), 1);

  EXPECT_CONTAINS(error_of([&] { Dataset d(f.dir + "/*"); }), "manifest.json' matches");
  EXPECT_CONTAINS(error_of([&] { Dataset d(f.dir + "/nothing_*.h5"); }), "nothing_*.h5");
}

TEST(Dataset, MissingShard) {
  Fixture f("ds_missing");
  std::filesystem::remove(f.shard(2));
  const std::string msg = error_of([&] { Dataset d(f.dir); });
  EXPECT_CONTAINS(msg, f.shard(2));
  EXPECT_CONTAINS(msg, "is missing");
  const auto problems = verify_dataset(f.dir);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_CONTAINS(problems[0], f.shard(2));
}

TEST(Dataset, ManifestCountDisagreesWithShard) {
  Fixture f("ds_counts");
  Manifest m = read_manifest(f.dir);
  const int64_t real = m.shards[2].tokens;
  m.shards[2].tokens += 100;
  write_manifest(f.dir, m);
  const std::string want = str("manifest.json' says shard_00002.h5 has ", real + 100,
                               " tokens, the shard has ", real);
  EXPECT_CONTAINS(error_of([&] { Dataset d(f.dir); }), want);
  const auto problems = verify_dataset(f.dir);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_CONTAINS(problems[0], want);
}

TEST(Dataset, ShardAttributesDisagreeWithManifest) {
  Fixture f("ds_attrs");
  Manifest m = read_manifest(f.dir);
  m.attrs.eos_id = 3;
  write_manifest(f.dir, m);
  const std::string msg = error_of([&] { Dataset d(f.dir); });
  EXPECT_CONTAINS(msg, f.shard(0));
  EXPECT_CONTAINS(msg, "eos_id 257");
}

// One message per mistake, naming the file and the key.
TEST(Dataset, ManifestErrorsNameFileAndKey) {
  Fixture f("ds_manifest_errors");
  const std::string text = read_file(f.manifest());
  auto broken = [&](const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    std::ofstream(f.manifest()) << std::string(text).replace(at, from.size(), to);
    return error_of([&] { read_manifest(f.dir); });
  };
  const std::string file = "'" + f.manifest() + "'";
  std::string msg = broken("\"vocab_size\": 259", "\"vocab\": 259");
  EXPECT_CONTAINS(msg, file);
  EXPECT_CONTAINS(msg, "key 'vocab_size' is missing");
  EXPECT_CONTAINS(broken("\"docs\": 40", "\"docs\": \"40\""),
                  "key 'shards[0].docs' should be an integer, not string");
  EXPECT_CONTAINS(broken("\"format\": \"longctx-dataset\"", "\"format\": \"other\""),
                  "(format 'other'");
  EXPECT_CONTAINS(broken("\"version\": 1", "\"version\": 7"),
                  "manifest version 7, this build reads version 1");
  EXPECT_CONTAINS(broken("\"shards\": [", "\"shards\": [[],"), "key 'shards[0]'");
  msg = broken("{", "[");
  EXPECT_CONTAINS(msg, file);
  EXPECT_CONTAINS(msg, "not valid JSON");
  std::filesystem::remove(f.manifest());
  EXPECT_CONTAINS(error_of([&] { read_manifest(f.dir); }), "has no manifest.json");
}

TEST(Dataset, Tokenizer) {
  Fixture f("ds_tokenizer");
  Dataset ds(f.dir);
  const auto tok = ds.tokenizer();
  EXPECT_EQ(tok->name(), "byte");
  const uint32_t ids[] = {256, 'h', 'i', 257};
  EXPECT_EQ(tok->decode(ids, 4), "hi");
}

TEST(Verify, ValidDatasetHasNoProblems) {
  Fixture f("verify_ok");
  EXPECT_TRUE(verify_dataset(f.dir).empty());
  EXPECT_TRUE(verify_dataset(f.dir + "/shard_*.h5").empty());
}

// A shard whose ids exceed its vocab_size (our writer refuses those: the attribute is lowered
// afterwards) is found only by reading every token.
TEST(Verify, FindsIdsAboveVocab) {
  const std::string dir = test::temp_dir("verify_ids");
  ShardAttrs a = test::byte_attrs();
  a.vocab_size = 100000;
  std::vector<Doc> docs = {{1, 2, 3}, {4, 70000, 5, 80000}};
  test::write_shard(dir + "/shard_00000.h5", a, docs);
  test::set_int_attr(dir + "/shard_00000.h5", "vocab_size", 60000);
  a.vocab_size = 60000;
  Manifest m;
  m.attrs = a;
  m.shards = {{"shard_00000.h5", 7, 2, hash_file(dir + "/shard_00000.h5")}};
  write_manifest(dir, m);

  Dataset ds(dir);  // opening does not read the tokens
  const auto problems = verify_dataset(dir);
  // The byte tokenizer's vocabulary is not 60000 either: that is the other problem.
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_CONTAINS(problems[1], dir + "/shard_00000.h5");
  EXPECT_CONTAINS(problems[1], "token 4 is id 70000, not below vocab_size 60000 (2 such tokens)");
}

TEST(Verify, FindsChecksumMismatch) {
  Fixture f("verify_checksum");
  // Same counts, other tokens: a valid shard the manifest was not written for.
  std::vector<Doc> other = f.shards[0];
  other[3][1] ^= 1;
  test::write_shard(f.shard(0), test::byte_attrs(), other, f.labels[0]);
  EXPECT_NO_THROW(Dataset d(f.dir));
  const auto problems = verify_dataset(f.dir);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_CONTAINS(problems[0], f.shard(0));
  EXPECT_CONTAINS(problems[0], "checksum");
}

TEST(Verify, FindsDecreasingOffsets) {
  Fixture f("verify_offsets");
  test::write_u64(f.shard(2), "doc_offsets", 3, 1);
  Manifest m = read_manifest(f.dir);
  m.shards[2].checksum = hash_file(f.shard(2));
  write_manifest(f.dir, m);
  const auto problems = verify_dataset(f.dir);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_CONTAINS(problems[0], f.shard(2));
  EXPECT_CONTAINS(problems[0], "doc_offsets[3] = 1 is below doc_offsets[2]");
}

TEST(Verify, FindsLabelsOutsideTheNames) {
  Fixture f("verify_labels");
  Manifest m = read_manifest(f.dir);
  m.labels = {"a", "b"};  // label 2 no longer has a name
  write_manifest(f.dir, m);
  const auto problems = verify_dataset(f.dir);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_CONTAINS(problems[0], f.shard(0) + "': document 2 has label 2, expected 0..1");
  EXPECT_CONTAINS(problems[1], f.shard(2));
}

TEST(Verify, ReportsEveryBadShard) {
  Fixture f("verify_several");
  std::ofstream(f.shard(0), std::ios::app) << "trailing bytes";  // checksum only
  std::filesystem::resize_file(f.shard(2), std::filesystem::file_size(f.shard(2)) / 2);
  const auto problems = verify_dataset(f.dir);
  ASSERT_EQ(problems.size(), 3u);  // shard 0: checksum; shard 2: checksum, then unreadable
  EXPECT_CONTAINS(problems[0], f.shard(0));
  EXPECT_CONTAINS(problems[1], f.shard(2));
  EXPECT_CONTAINS(problems[2], f.shard(2));
}

TEST(Verify, UnreadableManifestIsOneProblem) {
  const std::string dir = test::temp_dir("verify_nomanifest");
  const auto problems = verify_dataset(dir);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_CONTAINS(problems[0], "manifest.json");
}

// ----- the command --------------------------------------------------------------------------

std::string longctx(const std::string& args) { return std::string(LONGCTX_BINARY) + " " + args; }

TEST(DataCommand, InspectJson) {
  Fixture f("cmd_inspect");
  std::string out;
  // stdout alone: it must be exactly one JSON object.
  ASSERT_EQ(test::run_command("(" + longctx("data inspect --json " + f.dir) + " 2>/dev/null)",
                              &out),
            0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["tokens"], f.all.size());
  EXPECT_EQ(j["docs"], 65);
  ASSERT_EQ(j["shards"].size(), 3u);
  EXPECT_EQ(j["shards"][2]["docs"], 25);
  EXPECT_EQ(j["vocab_size"], 259);
  EXPECT_EQ(j["tokenizer"]["name"], "byte");
  EXPECT_EQ(j["labels"]["a"], 14 + 9);  // ids 0, 3, 6, ... of 40 and of 25 documents
  EXPECT_EQ(j["labels"]["c"], 13 + 8);
  size_t longest = 0;
  for (const auto& s : f.shards)
    for (const Doc& d : s) longest = std::max(longest, d.size());
  EXPECT_EQ(j["doc_length"]["max"], longest);
  EXPECT_TRUE(j["sample"].is_string());
}

TEST(DataCommand, InspectTableShowsDecodedSample) {
  const std::string dir = test::temp_dir("cmd_sample");
  const std::string text = "Hello\tworld\n\x01 caf\xc3\xa9 \xff";
  Doc d = {256};
  for (unsigned char c : text) d.push_back(c);
  d.push_back(257);
  test::write_dataset(dir, test::byte_attrs(), {{d}});
  std::string out;
  ASSERT_EQ(test::run_command(longctx("data inspect " + dir), &out), 0) << out;
  EXPECT_CONTAINS(out, "\"Hello\\tworld\\n\\x01 caf\xc3\xa9 \\xff\"");
  EXPECT_CONTAINS(out, "shard_00000.h5");
  EXPECT_CONTAINS(out, "bos 256, eos 257, pad 258");
}

TEST(DataCommand, VerifyExitCodes) {
  Fixture f("cmd_verify");
  std::string out;
  EXPECT_EQ(test::run_command(longctx("data verify " + f.dir), &out), 0) << out;
  EXPECT_CONTAINS(out, str("ok: 3 shards, ", f.all.size(), " tokens, 65 documents verified"));
  std::ofstream(f.shard(2), std::ios::app) << "x";
  EXPECT_EQ(test::run_command(longctx("data verify " + f.dir), &out), 1) << out;
  EXPECT_CONTAINS(out, f.shard(2));
}

// Offsets that go backwards: inspect names the shard instead of printing a wrapped length.
TEST(DataCommand, InspectNamesDecreasingOffsets) {
  Fixture f("cmd_inspect_offsets");
  test::write_u64(f.shard(2), "doc_offsets", 3, 1);
  std::string out;
  EXPECT_EQ(test::run_command(longctx("data inspect " + f.dir), &out), 1) << out;
  EXPECT_CONTAINS(out, f.shard(2));
  EXPECT_CONTAINS(out, "doc_offsets[3] = 1 is below doc_offsets[2]");
}

TEST(DataCommand, UsageAndHelp) {
  std::string out;
  EXPECT_EQ(test::run_command(longctx("data --help"), &out), 0);
  EXPECT_CONTAINS(out, "usage: longctx data inspect PATH [--json]");
  EXPECT_EQ(test::run_command(longctx("data verify --help"), &out), 0);
  EXPECT_EQ(test::run_command(longctx("data"), &out), 2);
  EXPECT_EQ(test::run_command(longctx("data frobnicate x"), &out), 2);
  EXPECT_CONTAINS(out, "unknown data command 'frobnicate'");
  EXPECT_EQ(test::run_command(longctx("data inspect"), &out), 2);
  EXPECT_EQ(test::run_command(longctx("data verify a b"), &out), 2);
  EXPECT_EQ(test::run_command(longctx("data verify --json x"), &out), 2);
  EXPECT_EQ(test::run_command(longctx("data inspect /nonexistent/dataset"), &out), 1);
  EXPECT_CONTAINS(out, "/nonexistent/dataset");
}

}  // namespace
}  // namespace longctx
