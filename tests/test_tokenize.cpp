// The tokenize pipeline: corpora of files, folders and JSONL go to shards that read back, through
// Dataset and the tokenizer, to the input bytes; shard cuts, the val split and labels; and every
// bad input fails through the CLI with a message naming the file and no manifest left behind.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/hash.h"
#include "core/rng.h"
#include "data/tokenize.h"
#include "data/tokenizer.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;
using test::error_of;

void write(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string random_bytes(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng.below(256));
  return s;
}

struct ReadDoc {
  std::string text;
  int32_t label = -1;
};

// Every document of the dataset in DIR, decoded with the dataset's own tokenizer; checks that
// each is stored as BOS, ids, EOS.
std::vector<ReadDoc> read_docs(const std::string& dir) {
  Dataset ds(dir);
  const auto tok = ds.tokenizer();
  std::vector<ReadDoc> docs;
  for (int64_t d = 0; d < ds.n_docs(); ++d) {
    int64_t first, last;
    ds.doc_range(d, &first, &last);
    std::vector<int32_t> ids(size_t(last - first));
    ds.read_tokens(first, last - first, ids.data());
    EXPECT_GE(ids.size(), 2u);
    EXPECT_EQ(ids.front(), ds.attrs().bos_id) << "document " << d;
    EXPECT_EQ(ids.back(), ds.attrs().eos_id) << "document " << d;
    const std::vector<uint32_t> body(ids.begin() + 1, ids.end() - 1);
    docs.push_back({tok->decode(body.data(), body.size()),
                    ds.manifest().has_labels ? ds.label(d) : -1});
  }
  return docs;
}

std::vector<std::string> texts(const std::vector<ReadDoc>& docs) {
  std::vector<std::string> t;
  for (const auto& d : docs) t.push_back(d.text);
  return t;
}

TokenizeOptions options(const std::vector<std::string>& inputs, const std::string& out) {
  TokenizeOptions o;
  o.inputs = inputs;
  o.out_dir = out;
  return o;
}

// Manifest counts and checksums agree with the shards on disk.
void expect_consistent(const std::string& dir) {
  const Manifest m = read_manifest(dir);
  int64_t tokens = 0, docs = 0;
  for (const ShardEntry& e : m.shards) {
    const std::string path = dir + "/" + e.name;
    EXPECT_EQ(e.checksum, hash_file(path)) << path;
    ShardReader r(path);
    EXPECT_EQ(r.attrs(), m.attrs) << path;
    EXPECT_EQ(r.n_tokens(), e.tokens) << path;
    EXPECT_EQ(r.n_docs(), e.docs) << path;
    tokens += e.tokens;
    docs += e.docs;
  }
  EXPECT_EQ(m.tokens(), tokens);
  EXPECT_EQ(m.docs(), docs);
  EXPECT_EQ(verify_dataset(dir), std::vector<std::string>{});
}

TEST(Tokenize, FolderOfFilesRoundTripsByteForByte) {
  const std::string root = test::temp_dir("tokenize_folder"), in = root + "/corpus";
  write(in + "/b.txt", "second file\nwith two lines\n");
  write(in + "/a.txt", "first file");
  write(in + "/sub/c.bin", random_bytes(5000, 1) + std::string("\0\xff\xc3", 3));
  write(in + "/sub/deeper/d.txt", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac");
  write(in + "/sub/empty.txt", "");
  write(in + "/.hidden.txt", "not read");
  write(in + "/.git/config", "not read either");
  const std::string extra = root + "/extra.txt";  // a file named on its own comes after
  write(extra, "the last one");

  const TokenizeSummary s = tokenize_corpus(options({in, extra}, root + "/out"));
  const std::vector<std::string> expected = {
      "first file", "second file\nwith two lines\n",
      random_bytes(5000, 1) + std::string("\0\xff\xc3", 3), "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
      "the last one"};
  const std::string dir = root + "/out/train";
  EXPECT_EQ(texts(read_docs(dir)), expected);
  EXPECT_FALSE(fs::exists(root + "/out/val"));

  const Manifest m = read_manifest(dir);
  EXPECT_EQ(m.attrs, test::byte_attrs());
  EXPECT_EQ(m.tokenizer_model, "");
  EXPECT_FALSE(m.has_labels);
  ASSERT_EQ(m.shards.size(), 1u);
  EXPECT_EQ(m.shards[0].name, "shard_00000.h5");
  int64_t tokens = 0;
  for (const auto& t : expected) tokens += int64_t(t.size()) + 2;
  EXPECT_EQ(m.tokens(), tokens);
  EXPECT_EQ(m.docs(), 5);
  expect_consistent(dir);
  EXPECT_EQ(s.train.docs, 5);
  EXPECT_EQ(s.train.tokens, tokens);
  EXPECT_EQ(s.train.shards, 1);
  EXPECT_EQ(s.empty_docs, 1);
}

std::string word_text(int n_lines, uint64_t seed) {
  const char* syl[] = {"ka", "ro", "mi", "te", "lu", "sa", "no", "vi", "de", "po", "ri", "gu"};
  Rng rng(seed);
  std::string s;
  for (int l = 0; l < n_lines; ++l) {
    for (int w = 0; w < 10; ++w) {
      for (int k = 0, n = 1 + int(rng.below(3)); k < n; ++k) s += syl[rng.below(12)];
      s += ' ';
    }
    s += "\n";
  }
  return s;
}

// Options whose warnings are collected in *warnings instead of printed.
TokenizeOptions options(const std::vector<std::string>& inputs, const std::string& out,
                        std::vector<std::string>* warnings) {
  TokenizeOptions o = options(inputs, out);
  o.warn = [warnings](const std::string& w) { warnings->push_back(w); };
  return o;
}

// The one warning that contains `part`.
std::string warning_about(const std::vector<std::string>& warnings, const std::string& part) {
  std::string found;
  for (const auto& w : warnings)
    if (w.find(part) != std::string::npos) {
      EXPECT_TRUE(found.empty()) << "two warnings about " << part;
      found = w;
    }
  EXPECT_FALSE(found.empty()) << "no warning about " << part;
  return found;
}

// Links are followed like folders and files, in the sorted order of the paths through them,
// each folder and file read once; a link back to an enclosing folder is not followed. Each skip
// is told by name and counted.
TEST(Tokenize, SymlinkedFoldersAreReadLikeFoldersOnce) {
  const std::string root = test::temp_dir("tokenize_links"), in = root + "/corpus";
  write(in + "/sub/a.txt", "sub a");
  write(in + "/sub.txt", "sub.txt");
  write(root + "/elsewhere/x.txt", "elsewhere x");
  write(root + "/elsewhere/deep/y.txt", "elsewhere deep y");
  write(root + "/lone.txt", "lone file");
  fs::create_directory_symlink("../elsewhere", in + "/sub-link");  // sorts before sub.txt
  fs::create_directory_symlink("../elsewhere", in + "/zz-again");  // the same folder again
  fs::create_directory_symlink("..", in + "/sub/up");              // back to corpus
  fs::create_symlink("../../lone.txt", in + "/sub/lone-link.txt");
  fs::create_symlink("a.txt", in + "/sub/z-alias.txt");  // a file already read
  fs::create_directory_symlink(".", in + "/.hidden-link");
  ASSERT_EQ(::mkfifo((in + "/pipe").c_str(), 0600), 0);

  std::vector<std::string> warnings;
  const TokenizeSummary s =
      tokenize_corpus(options({in, root + "/lone.txt"}, root + "/out", &warnings));
  // "sub-link/" < "sub.txt" < "sub/", as full paths sort.
  EXPECT_EQ(texts(read_docs(root + "/out/train")),
            (std::vector<std::string>{"elsewhere deep y", "elsewhere x", "sub.txt", "sub a",
                                      "lone file"}));
  EXPECT_EQ(s.skipped.cycles, 1);
  EXPECT_EQ(s.skipped.repeats, 3);  // zz-again, z-alias.txt, lone.txt named after its link
  EXPECT_EQ(s.skipped.special, 1);
  EXPECT_EQ(s.skipped.hidden, 1);
  EXPECT_EQ(warnings.size(), 5u);
  EXPECT_CONTAINS(warning_about(warnings, in + "/sub/up'"), "leads back to '" + in + "'");
  EXPECT_CONTAINS(warning_about(warnings, in + "/zz-again'"),
                  "folder already read as '" + in + "/sub-link'");
  EXPECT_CONTAINS(warning_about(warnings, in + "/sub/z-alias.txt'"),
                  "file already read as '" + in + "/sub/a.txt'");
  EXPECT_CONTAINS(warning_about(warnings, "'" + root + "/lone.txt'"),
                  "file already read as '" + in + "/sub/lone-link.txt'");
  EXPECT_CONTAINS(warning_about(warnings, in + "/pipe'"), "FIFO");
  for (const auto& w : warnings) EXPECT_CONTAINS(w, "skipped");
}

// SentencePiece stores each byte of invalid UTF-8 as U+FFFD: a warning names each document that
// held some, with the count; error refuses it, skip leaves it out.
TEST(Tokenize, InvalidUtf8UnderSentencePieceIsCountedRefusedOrSkipped) {
  const std::string root = test::temp_dir("tokenize_utf8"), in = root + "/in";
  std::vector<std::string> good;
  for (int i = 0; i < 40; ++i) {
    good.push_back(word_text(20, i));
    write(in + "/" + std::to_string(100 + i) + ".txt", good.back());
  }
  write(in + "/latin1.txt", "caf\xe9 cr\xe8me\n");                   // 2 bad bytes, the first at 3
  write(in + "/mixed.txt", "ok \xe2\x82\xac then \xe2\x82 cut \xed\xa0\x80");  // 2 + 3 bad bytes
  write(in + "/utf8.txt", "caf\xc3\xa9 \xf0\x9f\x99\x82");          // valid
  TokenizeOptions train = options({in}, root + "/model");
  train.tokenizer = "sentencepiece";
  train.spm_train_vocab = 300;
  train.invalid_utf8 = "skip";
  train.warn = [](const std::string&) {};
  tokenize_corpus(train);
  const std::string model = root + "/model/train/tokenizer.model";

  auto run = [&](const std::string& mode, const std::string& out, std::vector<std::string>* w) {
    TokenizeOptions o = options({in}, root + "/" + out, w);
    o.tokenizer = "sentencepiece";
    o.spm_model = model;
    o.invalid_utf8 = mode;
    return tokenize_corpus(o);
  };
  const std::string replacement = "\xef\xbf\xbd";
  for (const char* mode : {"", "warn"}) {
    std::vector<std::string> warnings;
    const TokenizeSummary s = run(mode, std::string("warn") + mode, &warnings);
    EXPECT_EQ(s.bad_utf8_docs, 2);
    EXPECT_EQ(s.bad_utf8_bytes, 7);
    ASSERT_EQ(warnings.size(), 2u);
    EXPECT_CONTAINS(warning_about(warnings, in + "/latin1.txt"), "2 bytes of invalid UTF-8 (the first at byte 3)");
    EXPECT_CONTAINS(warning_about(warnings, in + "/mixed.txt"), "5 bytes of invalid UTF-8 (the first at byte 12)");
    EXPECT_CONTAINS(warnings[0], "U+FFFD");
    const auto docs = texts(read_docs(root + "/warn" + mode + "/train"));
    ASSERT_EQ(docs.size(), 43u);
    EXPECT_EQ(docs[40], "caf" + replacement + " cr" + replacement + "me\n");
    EXPECT_EQ(docs[41], "ok \xe2\x82\xac then " + replacement + replacement + " cut " +
                            replacement + replacement + replacement);
    EXPECT_EQ(docs[42], "caf\xc3\xa9 \xf0\x9f\x99\x82");
  }

  std::vector<std::string> warnings;
  const TokenizeSummary skipped = run("skip", "skip", &warnings);
  EXPECT_EQ(skipped.bad_utf8_docs, 2);
  EXPECT_EQ(skipped.train.docs, 41);
  EXPECT_EQ(warnings.size(), 2u);
  EXPECT_CONTAINS(warning_about(warnings, in + "/latin1.txt"), "skipped");
  auto docs = texts(read_docs(root + "/skip/train"));
  good.push_back("caf\xc3\xa9 \xf0\x9f\x99\x82");
  EXPECT_EQ(docs, good);

  const std::string error = error_of([&] { run("error", "error", &warnings); });
  EXPECT_CONTAINS(error, in + "/latin1.txt: invalid UTF-8 at byte 3 (2 invalid bytes");
  EXPECT_CONTAINS(error, "--invalid-utf8 skip");
  EXPECT_FALSE(fs::exists(root + "/error/train/manifest.json"));
  // Refused before a model is trained on it.
  train.invalid_utf8 = "error";
  train.out_dir = root + "/error_train";
  EXPECT_CONTAINS(error_of([&] { tokenize_corpus(train); }), in + "/latin1.txt");
}

// The byte tokenizer keeps any bytes: no warning, no count, and --invalid-utf8 is refused.
TEST(Tokenize, ByteTokenizerKeepsInvalidUtf8) {
  const std::string root = test::temp_dir("tokenize_utf8_bytes");
  write(root + "/in/latin1.txt", "caf\xe9 cr\xe8me\n");
  write(root + "/in/random.bin", random_bytes(3000, 9));
  std::vector<std::string> warnings;
  const TokenizeSummary s = tokenize_corpus(options({root + "/in"}, root + "/out", &warnings));
  EXPECT_EQ(texts(read_docs(root + "/out/train")),
            (std::vector<std::string>{"caf\xe9 cr\xe8me\n", random_bytes(3000, 9)}));
  EXPECT_EQ(warnings, std::vector<std::string>{});
  EXPECT_EQ(s.bad_utf8_docs, 0);
  EXPECT_EQ(s.bad_utf8_bytes, 0);
  TokenizeOptions o = options({root + "/in"}, root + "/out2");
  o.invalid_utf8 = "error";
  EXPECT_CONTAINS(error_of([&] { tokenize_corpus(o); }), "SentencePiece only");
}

TEST(Tokenize, ShardsAreCutOnceTheyReachShardTokens) {
  const std::string root = test::temp_dir("tokenize_shards");
  Rng rng(5);
  std::vector<std::string> expected;
  for (int i = 0; i < 60; ++i) {
    expected.push_back(random_bytes(50 + rng.below(400), 100 + i));
    char name[32];
    std::snprintf(name, sizeof name, "/in/doc%03d.bin", i);
    write(root + name, expected.back());
  }
  TokenizeOptions o = options({root + "/in"}, root + "/out");
  o.shard_tokens = 2000;
  const TokenizeSummary s = tokenize_corpus(o);
  const std::string dir = root + "/out/train";
  EXPECT_EQ(texts(read_docs(dir)), expected);
  const Manifest m = read_manifest(dir);
  ASSERT_GE(m.shards.size(), 5u);
  EXPECT_EQ(s.train.shards, int(m.shards.size()));
  size_t doc = 0;
  for (size_t i = 0; i < m.shards.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "shard_%05zu.h5", i);
    EXPECT_EQ(m.shards[i].name, name);
    const int64_t last_doc = int64_t(expected[doc + size_t(m.shards[i].docs) - 1].size()) + 2;
    if (i + 1 < m.shards.size()) {
      // Full, and it was not full before its last document.
      EXPECT_GE(m.shards[i].tokens, 2000) << name;
      EXPECT_LT(m.shards[i].tokens - last_doc, 2000) << name;
    }
    doc += size_t(m.shards[i].docs);
  }
  expect_consistent(dir);
}

TEST(Tokenize, ValSplitIsDisjointAndDeterministic) {
  const std::string root = test::temp_dir("tokenize_val");
  std::string jsonl;
  for (int i = 0; i < 300; ++i) jsonl += "{\"text\": \"document number " + std::to_string(i) + "\"}\n";
  write(root + "/docs.jsonl", jsonl);

  auto split = [&](const std::string& out, uint64_t seed) {
    TokenizeOptions o = options({root + "/docs.jsonl"}, root + "/" + out);
    o.val_fraction = 0.25;
    o.seed = seed;
    const TokenizeSummary s = tokenize_corpus(o);
    const auto train = texts(read_docs(root + "/" + out + "/train"));
    const auto val = texts(read_docs(root + "/" + out + "/val"));
    EXPECT_EQ(s.train.docs, int64_t(train.size()));
    EXPECT_EQ(s.val.docs, int64_t(val.size()));
    expect_consistent(root + "/" + out + "/val");
    return std::make_pair(train, val);
  };
  const auto [train, val] = split("a", 7);
  EXPECT_GT(val.size(), 40u);
  EXPECT_LT(val.size(), 110u);
  // Together, in their original order, they are the corpus.
  std::set<std::string> seen;
  size_t t = 0, v = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string doc = "document number " + std::to_string(i);
    if (t < train.size() && train[t] == doc) {
      ++t;
    } else {
      ASSERT_LT(v, val.size()) << doc;
      ASSERT_EQ(val[v], doc);
      ++v;
    }
  }
  EXPECT_EQ(t, train.size());
  EXPECT_EQ(v, val.size());

  EXPECT_EQ(split("b", 7), std::make_pair(train, val));
  EXPECT_NE(split("c", 8).second, val);
}

TEST(Tokenize, JsonlLabelsStringsAndIntegers) {
  const std::string root = test::temp_dir("tokenize_labels");
  write(root + "/a.jsonl",
        "{\"text\": \"great film\", \"label\": \"pos\"}\n"
        "\n"
        "{\"label\": \"neg\", \"text\": \"dull \\u00e9\\n\\\"quoted\\\"\", \"id\": 3}\n");
  write(root + "/b.jsonl",
        "{\"text\": \"fine\", \"label\": \"neutral\"}\r\n"
        "{\"text\": \"\", \"label\": \"zzz-empty\"}\n"
        "{\"text\": \"bad\", \"label\": \"neg\"}");
  TokenizeOptions o = options({root + "/a.jsonl", root + "/b.jsonl"}, root + "/out");
  o.label_field = "label";
  const TokenizeSummary s = tokenize_corpus(o);
  const Manifest m = read_manifest(root + "/out/train");
  EXPECT_TRUE(m.has_labels);
  // Names sorted; the empty document's label does not count.
  EXPECT_EQ(m.labels, (std::vector<std::string>{"neg", "neutral", "pos"}));
  EXPECT_EQ(s.labels, m.labels);
  const auto docs = read_docs(root + "/out/train");
  ASSERT_EQ(docs.size(), 4u);
  const std::vector<std::pair<std::string, int32_t>> expected = {
      {"great film", 2}, {"dull \xc3\xa9\n\"quoted\"", 0}, {"fine", 1}, {"bad", 0}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(docs[i].text, expected[i].first);
    EXPECT_EQ(docs[i].label, expected[i].second);
  }
  expect_consistent(root + "/out/train");

  write(root + "/ints.jsonl",
        "{\"text\": \"a\", \"y\": 3}\n{\"text\": \"b\", \"y\": 0}\n{\"text\": \"c\", \"y\": 3}\n");
  o = options({root + "/ints.jsonl"}, root + "/out_int");
  o.label_field = "y";
  tokenize_corpus(o);
  EXPECT_EQ(read_manifest(root + "/out_int/train").labels,
            (std::vector<std::string>{"0", "1", "2", "3"}));
  std::vector<int32_t> labels;
  for (const auto& d : read_docs(root + "/out_int/train")) labels.push_back(d.label);
  EXPECT_EQ(labels, (std::vector<int32_t>{3, 0, 3}));
}

TEST(Tokenize, SentencePieceTrainedOnTheCorpusTravelsWithTheDataset) {
  const std::string root = test::temp_dir("tokenize_spm");
  std::vector<std::string> expected;
  for (int i = 0; i < 80; ++i) {
    expected.push_back(word_text(20, i) + (i % 7 == 0 ? "  \xe2\x9c\x93 \xf0\x9f\x99\x82\n" : ""));
    write(root + "/in/" + std::to_string(1000 + i) + ".txt", expected.back());
  }
  TokenizeOptions o = options({root + "/in"}, root + "/out");
  o.tokenizer = "sentencepiece";
  o.spm_train_vocab = 400;
  o.val_fraction = 0.2;
  tokenize_corpus(o);
  for (const char* split : {"train", "val"}) {
    const std::string dir = root + "/out/" + split;
    const Manifest m = read_manifest(dir);
    EXPECT_EQ(m.attrs.tokenizer, "sentencepiece");
    EXPECT_EQ(m.attrs.vocab_size, 400);
    EXPECT_EQ(m.tokenizer_model, "tokenizer.model");
    EXPECT_EQ(m.attrs.tokenizer_hash, hash_file(dir + "/tokenizer.model"));
    expect_consistent(dir);
  }
  auto train = texts(read_docs(root + "/out/train"));
  const auto val = texts(read_docs(root + "/out/val"));
  EXPECT_FALSE(val.empty());
  std::multiset<std::string> all(train.begin(), train.end());
  all.insert(val.begin(), val.end());
  EXPECT_EQ(all, std::multiset<std::string>(expected.begin(), expected.end()));
  // Subword pieces, not bytes.
  size_t train_bytes = 0;
  for (const auto& t : train) train_bytes += t.size();
  EXPECT_LT(size_t(Dataset(root + "/out/train").n_tokens()), train_bytes / 2);

  // The same model given as a file encodes the same.
  TokenizeOptions again = options({root + "/in"}, root + "/out2");
  again.tokenizer = "sentencepiece";
  again.spm_model = root + "/out/train/tokenizer.model";
  again.val_fraction = 0.2;
  tokenize_corpus(again);
  EXPECT_EQ(read_manifest(root + "/out2/train").attrs, read_manifest(root + "/out/train").attrs);
  EXPECT_EQ(texts(read_docs(root + "/out2/train")), train);
}

// --- The command line ---

struct Cli {
  int rc;
  std::string out;
};

Cli cli(const std::string& args) {
  Cli c;
  c.rc = test::run_command(std::string(LONGCTX_BINARY) + " tokenize " + args, &c.out);
  return c;
}

class TokenizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    // One directory per test: ctest runs them side by side.
    root_ = test::temp_dir(std::string("tokenize_cli_") +
                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    write(root_ + "/good/a.txt", "some text");
    out_ = root_ + "/out";
  }
  // Fails with exit code `rc` and a message naming `name`, leaving no manifest or shard.
  void expect_failure(const std::string& args, int rc, const std::string& name) {
    const Cli c = cli(args);
    EXPECT_EQ(c.rc, rc) << args << "\n" << c.out;
    EXPECT_CONTAINS(c.out, name);
    EXPECT_CONTAINS(c.out, "error: ");
    EXPECT_FALSE(fs::exists(out_ + "/train/manifest.json")) << args;
    if (fs::exists(out_ + "/train")) {
      EXPECT_TRUE(fs::is_empty(out_ + "/train")) << args << ": left files behind";
    }
  }
  std::string root_, out_;
};

TEST_F(TokenizeCli, HelpAndSummary) {
  const Cli help = cli("--help");
  EXPECT_EQ(help.rc, 0);
  for (const char* opt : {"--out", "--tokenizer", "--spm-model", "--spm-train", "--spm-type",
                          "--shard-tokens", "--val-fraction", "--label-field", "--seed", "--force",
                          "--invalid-utf8"})
    EXPECT_CONTAINS(help.out, opt);
  const Cli ok = cli(root_ + "/good --out " + out_ + " --quiet");
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_CONTAINS(ok.out, "tokenized 1 documents");
  EXPECT_CONTAINS(ok.out, "1 shards");
  EXPECT_EQ(texts(read_docs(out_ + "/train")), std::vector<std::string>{"some text"});
}

TEST_F(TokenizeCli, MissingInputAndOutput) {
  expect_failure(root_ + "/nope.txt --out " + out_, 1, root_ + "/nope.txt");
  expect_failure(root_ + "/good", 2, "--out");
  expect_failure("--out " + out_, 2, "INPUT");
}

TEST_F(TokenizeCli, UnreadableInput) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  write(root_ + "/locked/secret.txt", "x");
  ::chmod((root_ + "/locked/secret.txt").c_str(), 0);
  expect_failure(root_ + "/locked --out " + out_, 1, root_ + "/locked/secret.txt");
}

TEST_F(TokenizeCli, BrokenLinkIsAnErrorNamingIt) {
  fs::create_symlink(root_ + "/gone.txt", root_ + "/good/b.txt");
  expect_failure(root_ + "/good --out " + out_, 1, root_ + "/good/b.txt' is a broken symbolic link");
  expect_failure(root_ + "/good/b.txt --out " + out_, 1, root_ + "/gone.txt");
}

TEST_F(TokenizeCli, SkipsAndInvalidUtf8AreToldWithCounts) {
  fs::create_directory_symlink(".", root_ + "/good/self");
  write(root_ + "/good/.hidden", "not read");
  Cli c = cli(root_ + "/good --out " + out_ + " --quiet");
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_CONTAINS(c.out, "warning: '" + root_ + "/good/self' leads back to '" + root_ + "/good'");
  EXPECT_CONTAINS(c.out, "skipped in the inputs: 1 hidden entry, 1 link back to an enclosing folder");

  SentencePieceTraining t;
  t.vocab_size = 300;
  t.threads = 1;
  std::vector<std::string> docs;
  for (int i = 0; i < 40; ++i) docs.push_back(word_text(20, i));
  write(root_ + "/m.model", train_sentencepiece(docs, t)->model_bytes());
  write(root_ + "/text/latin1.txt", "caf\xe9 cr\xe8me\n");
  write(root_ + "/text/ok.txt", "fine");
  const std::string args = root_ + "/text --out " + out_ + " --force --quiet --spm-model " + root_ + "/m.model";
  c = cli(args);
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_CONTAINS(c.out, "warning: " + root_ + "/text/latin1.txt: 2 bytes of invalid UTF-8 (the first at byte 3)");
  EXPECT_CONTAINS(c.out, "warning: 1 document held invalid UTF-8 (2 bytes in all)");
  c = cli(args + " --invalid-utf8 skip");
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_CONTAINS(c.out, "tokenized 1 documents (0 empty, 1 with invalid UTF-8 skipped)");
  expect_failure(args + " --invalid-utf8 error", 1, root_ + "/text/latin1.txt: invalid UTF-8 at byte 3");
  expect_failure(args + " --invalid-utf8 maybe", 2, "maybe");
  expect_failure(root_ + "/text --out " + out_ + " --invalid-utf8 error", 2, "--invalid-utf8");
}

TEST_F(TokenizeCli, EmptyCorpus) {
  write(root_ + "/empty/a.txt", "");
  write(root_ + "/empty/sub/b.txt", "");
  expect_failure(root_ + "/empty --out " + out_, 1, root_ + "/empty");
  fs::create_directories(root_ + "/nothing");
  expect_failure(root_ + "/nothing --out " + out_, 1, root_ + "/nothing");
  write(root_ + "/blank.jsonl", "\n{\"text\": \"\"}\n");
  expect_failure(root_ + "/blank.jsonl --out " + out_, 1, root_ + "/blank.jsonl");
}

TEST_F(TokenizeCli, UsageErrors) {
  expect_failure(root_ + "/good --out " + out_ + " --tokenizer wordpiece", 2, "wordpiece");
  expect_failure(root_ + "/good --out " + out_ + " --tokenizer sentencepiece", 2, "--spm-model");
  expect_failure(root_ + "/good --out " + out_ + " --shard-tokens 0", 2, "--shard-tokens");
  expect_failure(root_ + "/good --out " + out_ + " --val-fraction 1", 2, "--val-fraction");
  expect_failure(root_ + "/good --out " + out_ + " --spm-train 300 --spm-type word", 2, "word");
  expect_failure(root_ + "/good --out " + out_ + " --frobnicate", 2, "--frobnicate");
}

TEST_F(TokenizeCli, SpmModelThatIsNotAModel) {
  write(root_ + "/bad.model", "not a sentencepiece model");
  expect_failure(root_ + "/good --out " + out_ + " --spm-model " + root_ + "/bad.model", 1,
                 root_ + "/bad.model");
  expect_failure(root_ + "/good --out " + out_ + " --spm-model " + root_ + "/none.model", 1,
                 root_ + "/none.model");
}

TEST_F(TokenizeCli, BadJsonlLinesNameFileAndLine) {
  const std::string f = root_ + "/c.jsonl";
  write(f, "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": broken}\n");
  expect_failure(f + " --out " + out_, 1, f + ":3");
  write(f, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
  expect_failure(f + " --out " + out_, 1, f + ":2");
  write(f, "{\"text\": 5}\n");
  expect_failure(f + " --out " + out_, 1, f + ":1");
  write(f, "[\"text\"]\n");
  expect_failure(f + " --out " + out_, 1, f + ":1");
}

TEST_F(TokenizeCli, BadLabels) {
  const std::string f = root_ + "/l.jsonl";
  write(f, "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n");
  expect_failure(f + " --out " + out_ + " --label-field label", 1, f + ":2");
  write(f, "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": 1}\n");
  expect_failure(f + " --out " + out_ + " --label-field label", 1, f + ":2");
  write(f, "{\"text\": \"a\", \"label\": -1}\n");
  expect_failure(f + " --out " + out_ + " --label-field label", 1, f + ":1");
  write(f, "{\"text\": \"a\", \"label\": 0.5}\n");
  expect_failure(f + " --out " + out_ + " --label-field label", 1, f + ":1");
  // Labels come only from JSONL.
  expect_failure(root_ + "/good --out " + out_ + " --label-field label", 1, root_ + "/good/a.txt");
}

// A corpus that fails after shards were written leaves none of them.
TEST_F(TokenizeCli, FailureAfterShardsRemovesThem) {
  const std::string f = root_ + "/big.jsonl";
  std::string jsonl;
  for (int i = 0; i < 3000; ++i) jsonl += "{\"text\": \"" + std::string(100, 'a' + i % 26) + "\"}\n";
  write(f, jsonl + "{\"text\": oops}\n");
  expect_failure(f + " --out " + out_ + " --shard-tokens 1000 --quiet", 1, f + ":3001");
}

TEST_F(TokenizeCli, ExistingDatasetNeedsForce) {
  for (int i = 0; i < 20; ++i) write(root_ + "/many/" + std::to_string(i) + ".txt", "text");
  ASSERT_EQ(cli(root_ + "/many --out " + out_ + " --quiet --val-fraction 0.5").rc, 0);
  ASSERT_TRUE(fs::exists(out_ + "/val/manifest.json"));
  const std::string before = hash_file(out_ + "/train/manifest.json");
  const Cli again = cli(root_ + "/good --out " + out_ + " --quiet");
  EXPECT_EQ(again.rc, 1);
  EXPECT_CONTAINS(again.out, out_ + "/train/manifest.json");
  EXPECT_CONTAINS(again.out, "--force");
  EXPECT_EQ(hash_file(out_ + "/train/manifest.json"), before);

  write(root_ + "/other/b.txt", "other text");
  const Cli forced = cli(root_ + "/other --out " + out_ + " --quiet --force");
  EXPECT_EQ(forced.rc, 0) << forced.out;
  EXPECT_EQ(texts(read_docs(out_ + "/train")), std::vector<std::string>{"other text"});
  // The old val split went with the old dataset.
  EXPECT_FALSE(fs::exists(out_ + "/val/manifest.json"));
}

}  // namespace
}  // namespace longctx
