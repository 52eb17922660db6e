// Token shards: what ShardWriter writes, ShardReader reads back (both id widths, several chunks,
// reads at every kind of boundary), and every malformed file is refused with its name.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using test::Doc;
using test::error_of;

std::vector<int32_t> read_all(const ShardReader& r) {
  std::vector<int32_t> out(size_t(r.n_tokens()));
  r.read_tokens(0, r.n_tokens(), out.data());
  return out;
}

void expect_offsets(const ShardReader& r, const std::vector<Doc>& docs) {
  std::vector<uint64_t> off(docs.size() + 1);
  r.read_offsets(0, int64_t(off.size()), off.data());
  uint64_t at = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    EXPECT_EQ(off[d], at) << "document " << d;
    at += docs[d].size();
  }
  EXPECT_EQ(off.back(), at);
}

TEST(Shards, RoundTripUint16) {
  const std::string path = test::temp_dir("shards_u16") + "/s.h5";
  const ShardAttrs a = test::byte_attrs();
  const auto docs = test::make_docs(1, 50, a.vocab_size, 300);
  std::vector<int32_t> labels;
  for (int i = 0; i < 50; ++i) labels.push_back(i % 3);
  test::write_shard(path, a, docs, labels);

  ShardReader r(path);
  EXPECT_EQ(r.attrs(), a);
  EXPECT_EQ(r.token_bytes(), 2);
  EXPECT_EQ(r.n_docs(), 50);
  EXPECT_EQ(read_all(r), test::concat(docs));
  expect_offsets(r, docs);
  ASSERT_TRUE(r.has_labels());
  std::vector<int32_t> got(50);
  r.read_labels(0, 50, got.data());
  EXPECT_EQ(got, labels);
}

TEST(Shards, RoundTripUint32) {
  const std::string path = test::temp_dir("shards_u32") + "/s.h5";
  ShardAttrs a = test::byte_attrs();
  a.vocab_size = 100000;  // above 65536: ids need 32 bits
  a.tokenizer = "sentencepiece";
  a.tokenizer_hash = "0123abcd";
  auto docs = test::make_docs(2, 20, a.vocab_size, 200);
  docs[3].push_back(99999);  // the largest id survives
  test::write_shard(path, a, docs);

  ShardReader r(path);
  EXPECT_EQ(r.attrs(), a);
  EXPECT_EQ(r.token_bytes(), 4);
  EXPECT_FALSE(r.has_labels());
  EXPECT_EQ(read_all(r), test::concat(docs));
  expect_offsets(r, docs);
  EXPECT_CONTAINS(error_of([&] { r.read_labels(0, 1, nullptr); }), path);
}

TEST(Shards, VocabOf65536StillFitsUint16) {
  const std::string path = test::temp_dir("shards_65536") + "/s.h5";
  ShardAttrs a = test::byte_attrs();
  a.vocab_size = 65536;
  test::write_shard(path, a, {{0, 65535, 7}});
  ShardReader r(path);
  EXPECT_EQ(r.token_bytes(), 2);
  EXPECT_EQ(read_all(r), (std::vector<int32_t>{0, 65535, 7}));
}

// More than two chunks of 1M ids, so reads cross chunk boundaries and the last chunk is partial.
TEST(Shards, ReadsAcrossChunkBoundaries) {
  const std::string path = test::temp_dir("shards_chunks") + "/s.h5";
  const ShardAttrs a = test::byte_attrs();
  const auto docs = test::make_docs(3, 250, a.vocab_size, 20000);
  test::write_shard(path, a, docs);
  const std::vector<int32_t> all = test::concat(docs);
  ASSERT_GT(all.size(), size_t(2) << 20);

  ShardReader r(path);
  ASSERT_EQ(r.n_tokens(), int64_t(all.size()));
  const int64_t chunk = int64_t(1) << 20, n = r.n_tokens();
  const std::vector<std::pair<int64_t, int64_t>> reads = {
      {0, 1},        {0, 4097},          {chunk - 1, 1},  {chunk - 5, 10}, {chunk, 4097},
      {2 * chunk - 2000, 4097}, {n - 4097, 4097}, {n - 1, 1}, {5, 0}, {0, n}};
  for (auto [begin, len] : reads) {
    std::vector<int32_t> got(static_cast<size_t>(len));
    r.read_tokens(begin, len, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), all.begin() + begin))
        << "tokens [" << begin << ", " << begin + len << ")";
  }
  expect_offsets(r, docs);
  std::vector<int32_t> one(1);
  EXPECT_CONTAINS(error_of([&] { r.read_tokens(n, 1, one.data()); }), path);
  EXPECT_CONTAINS(error_of([&] { r.read_tokens(-1, 1, one.data()); }), "out of range");
}

TEST(Shards, EmptyShard) {
  const std::string path = test::temp_dir("shards_empty") + "/s.h5";
  test::write_shard(path, test::byte_attrs(), {});
  ShardReader r(path);
  EXPECT_EQ(r.n_tokens(), 0);
  EXPECT_EQ(r.n_docs(), 0);
}

TEST(Shards, EmptyDocumentsKeepTheirOffsets) {
  const std::string path = test::temp_dir("shards_emptydocs") + "/s.h5";
  const std::vector<Doc> docs = {{}, {1, 2}, {}, {}, {3}};
  test::write_shard(path, test::byte_attrs(), docs);
  ShardReader r(path);
  EXPECT_EQ(r.n_docs(), 5);
  expect_offsets(r, docs);
}

TEST(Shards, NothingLeftWithoutFinish) {
  const std::string dir = test::temp_dir("shards_unfinished");
  const std::string path = dir + "/s.h5";
  {
    ShardWriter w(path, test::byte_attrs(), false);
    const Doc d = {1, 2, 3};
    w.add_document(d.data(), 3);
    EXPECT_TRUE(std::filesystem::exists(path + ".tmp." + std::to_string(getpid())));
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(Shards, IdAtOrAboveVocabIsRefused) {
  const std::string path = test::temp_dir("shards_badid") + "/s.h5";
  ShardWriter w(path, test::byte_attrs(), false);
  const Doc good = {1, 2}, bad = {5, 259};
  w.add_document(good.data(), 2);
  const std::string msg = error_of([&] { w.add_document(bad.data(), 2); });
  EXPECT_CONTAINS(msg, "token id 259");
  EXPECT_CONTAINS(msg, "vocab_size 259");
  EXPECT_CONTAINS(msg, path);
  // The refused document left no trace.
  w.finish();
  ShardReader r(path);
  EXPECT_EQ(r.n_tokens(), 2);
  EXPECT_EQ(r.n_docs(), 1);
}

TEST(Shards, LabeledShardNeedsLabels) {
  const std::string path = test::temp_dir("shards_nolabel") + "/s.h5";
  ShardWriter w(path, test::byte_attrs(), true);
  const Doc d = {1};
  EXPECT_CONTAINS(error_of([&] { w.add_document(d.data(), 1); }), "label -1");
}

TEST(Shards, MissingFile) {
  const std::string path = test::temp_dir("shards_missing") + "/nope.h5";
  EXPECT_CONTAINS(error_of([&] { ShardReader r(path); }), path);
}

TEST(Shards, NotAnHdf5File) {
  const std::string path = test::temp_dir("shards_text") + "/s.h5";
  std::ofstream(path) << "just some text, long enough to look like something\n";
  EXPECT_CONTAINS(error_of([&] { ShardReader r(path); }), "'" + path + "' is not an HDF5 file");
}

TEST(Shards, Hdf5FileOfAnotherFormat) {
  const std::string path = test::temp_dir("shards_other") + "/s.h5";
  {
    auto lock = hdf5_lock();
    H5Handle f = h5_file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_TRUE(f.valid());
    write_string_attr(f.get(), "format", "checkpoint", path);
  }
  EXPECT_CONTAINS(error_of([&] { ShardReader r(path); }),
                  "'" + path + "' is not a longctx token shard (format 'checkpoint')");
}

TEST(Shards, Hdf5FileWithoutFormat) {
  const std::string path = test::temp_dir("shards_plain") + "/s.h5";
  {
    auto lock = hdf5_lock();
    H5Handle f = h5_file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_TRUE(f.valid());
  }
  EXPECT_CONTAINS(error_of([&] { ShardReader r(path); }), "no 'format' attribute");
}

TEST(Shards, WrongVersion) {
  const std::string path = test::temp_dir("shards_version") + "/s.h5";
  test::write_shard(path, test::byte_attrs(), {{1, 2}});
  test::set_int_attr(path, "version", 2);
  const std::string msg = error_of([&] { ShardReader r(path); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "version 2, this build reads version 1");
}

TEST(Shards, OffsetsThatDoNotEndAtTheTokenCount) {
  const std::string path = test::temp_dir("shards_offsets") + "/s.h5";
  test::write_shard(path, test::byte_attrs(), {{1, 2}, {3}});
  test::write_u64(path, "doc_offsets", 2, 2);
  const std::string msg = error_of([&] { ShardReader r(path); });
  EXPECT_CONTAINS(msg, path);
  EXPECT_CONTAINS(msg, "expected 0 to 3");
}

// A shard cut in half (a copy that stopped midway): an error naming it, never a crash.
TEST(Shards, TruncatedShard) {
  const std::string path = test::temp_dir("shards_truncated") + "/s.h5";
  const ShardAttrs a = test::byte_attrs();
  test::write_shard(path, a, test::make_docs(4, 100, a.vocab_size, 30000));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  const std::string msg = error_of([&] {
    ShardReader r(path);
    read_all(r);
  });
  EXPECT_CONTAINS(msg, path);
}

// HDF5's own error stack never reaches stderr, from whichever thread (its error settings are
// per thread in thread-safe builds).
TEST(Shards, Hdf5PrintsNothingFromAnyThread) {
  const std::string path = test::temp_dir("shards_quiet") + "/s.h5";
  const ShardAttrs a = test::byte_attrs();
  test::write_shard(path, a, test::make_docs(5, 100, a.vocab_size, 30000));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  testing::internal::CaptureStderr();
  std::string msg;
  std::thread t([&] { msg = error_of([&] { ShardReader r(path); }); });
  t.join();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_CONTAINS(msg, path);
}

}  // namespace
}  // namespace longctx
