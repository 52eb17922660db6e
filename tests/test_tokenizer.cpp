// Tokenizers: byte round trips, SentencePiece training, reload, model identity and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "core/hash.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using test::error_of;

std::vector<uint32_t> encode(const Tokenizer& t, std::string_view text) {
  std::vector<uint32_t> ids;
  t.encode(text, &ids);
  return ids;
}

std::string random_bytes(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng.below(256));
  return s;
}

TEST(ByteTokenizer, RoundTripsAnyBytes) {
  const auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  EXPECT_EQ(tok->pad_id(), 258);
  EXPECT_EQ(tok->model_hash(), "byte-v1");
  EXPECT_EQ(tok->model_bytes(), "");
  // Zero bytes, a lone continuation byte, a truncated sequence, an overlong form.
  const std::string text =
      random_bytes(10000, 1) + std::string("\0\x80\xC3\xF0\x9F\xC0\xAF\xFF", 8);
  const auto ids = encode(*tok, text);
  ASSERT_EQ(ids.size(), text.size());
  for (size_t i = 0; i < text.size(); ++i) ASSERT_EQ(ids[i], static_cast<unsigned char>(text[i]));
  EXPECT_EQ(tok->decode(ids.data(), ids.size()), text);
}

TEST(ByteTokenizer, EncodeAppends) {
  const auto tok = make_byte_tokenizer();
  std::vector<uint32_t> ids = {256};
  tok->encode("ab", &ids);
  EXPECT_EQ(ids, (std::vector<uint32_t>{256, 'a', 'b'}));
}

TEST(ByteTokenizer, DecodeDropsSpecialsAndRefusesIdsOutsideTheVocab) {
  const auto tok = make_byte_tokenizer();
  const std::vector<uint32_t> ids = {256, 'h', 258, 'i', 257, 258};
  EXPECT_EQ(tok->decode(ids.data(), ids.size()), "hi");
  const std::vector<uint32_t> bad = {'a', 259};
  const std::string msg = error_of([&] { tok->decode(bad.data(), bad.size()); });
  EXPECT_CONTAINS(msg, "259");
}

// Documents of made-up words over a few syllables: enough distinct text for a small BPE model.
std::vector<std::string> word_corpus(int n_docs, uint64_t seed) {
  const char* syl[] = {"ka", "ro", "mi", "te", "lu", "sa", "no", "vi", "de", "po", "ri", "gu"};
  Rng rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n_docs; ++d) {
    std::string doc;
    for (int line = 0; line < 8; ++line) {
      for (int w = 0; w < 12; ++w) {
        const int n = 1 + static_cast<int>(rng.below(3));
        for (int s = 0; s < n; ++s) doc += syl[rng.below(12)];
        doc += rng.below(10) == 0 ? ", " : " ";
      }
      doc += ".\n";
    }
    docs.push_back(doc);
  }
  return docs;
}

class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SentencePieceTraining opts;
    opts.vocab_size = 400;
    opts.model_type = "bpe";
    opts.threads = 1;
    tok_ = train_sentencepiece(word_corpus(200, 7), opts).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  static Tokenizer* tok_;
};
Tokenizer* SentencePieceTest::tok_ = nullptr;

TEST_F(SentencePieceTest, TrainedModelHasItsSpecials) {
  EXPECT_EQ(tok_->name(), "sentencepiece");
  EXPECT_EQ(tok_->vocab_size(), 400);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_EQ(tok_->pad_id(), 3);
  EXPECT_EQ(tok_->model_hash(), hash_bytes(tok_->model_bytes()));
}

TEST_F(SentencePieceTest, AsciiTextRoundTripsAndIsCompressed) {
  // Identity normalization: repeated spaces, tabs, newlines and a leading space survive.
  for (const std::string& text :
       {word_corpus(3, 99)[2], std::string(" karo  mite\tlusa\n\nnovi "), std::string("x")}) {
    const auto ids = encode(*tok_, text);
    for (uint32_t id : ids) ASSERT_LT(id, 400u);
    EXPECT_EQ(tok_->decode(ids.data(), ids.size()), text);
  }
  const std::string doc = word_corpus(1, 5)[0];
  EXPECT_LT(encode(*tok_, doc).size(), doc.size() / 2) << "the model learned no merges";
}

// Long documents are encoded in pieces cut after newlines; that must equal encoding each line on
// its own, since no piece spans a newline, whatever the cut points.
TEST_F(SentencePieceTest, LongDocumentsEncodeLineByLine) {
  std::string doc;
  for (const auto& d : word_corpus(40, 31)) doc += d + "  \n\n " + "日本🙂\n";
  ASSERT_GT(doc.size(), 20000u);
  std::vector<uint32_t> by_line;
  for (size_t pos = 0; pos < doc.size();) {
    const size_t end = std::min(doc.find('\n', pos), doc.size() - 1) + 1;
    tok_->encode(std::string_view(doc).substr(pos, end - pos), &by_line);
    pos = end;
  }
  const auto ids = encode(*tok_, doc);
  EXPECT_EQ(ids, by_line);
  EXPECT_EQ(tok_->decode(ids.data(), ids.size()), doc);
}

TEST_F(SentencePieceTest, UnseenCharactersRoundTripThroughByteFallback) {
  const std::string text = "naïve café — 日本語 🙂 \x01 zero:" + std::string(1, '\0') + "end";
  const auto ids = encode(*tok_, text);
  EXPECT_EQ(tok_->decode(ids.data(), ids.size()), text);
  // Random code points of every UTF-8 length.
  Rng rng(3);
  std::string mixed;
  for (int i = 0; i < 2000; ++i) {
    const uint32_t ranges[4][2] = {{0x20, 0x7F}, {0x80, 0x7FF}, {0xE000, 0xFFFD}, {0x10000, 0x10FFFF}};
    const auto& r = ranges[rng.below(4)];
    const uint32_t cp = r[0] + static_cast<uint32_t>(rng.below(r[1] - r[0]));
    if (cp < 0x80) {
      mixed += static_cast<char>(cp);
    } else if (cp < 0x800) {
      mixed += static_cast<char>(0xC0 | (cp >> 6));
      mixed += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      mixed += static_cast<char>(0xE0 | (cp >> 12));
      mixed += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      mixed += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      mixed += static_cast<char>(0xF0 | (cp >> 18));
      mixed += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      mixed += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      mixed += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  const auto mixed_ids = encode(*tok_, mixed);
  EXPECT_EQ(tok_->decode(mixed_ids.data(), mixed_ids.size()), mixed);
}

TEST_F(SentencePieceTest, DecodeDropsSpecialsAndRefusesIdsOutsideTheVocab) {
  auto ids = encode(*tok_, "karo mite");
  ids.insert(ids.begin(), 1);
  ids.push_back(2);
  ids.push_back(3);
  EXPECT_EQ(tok_->decode(ids.data(), ids.size()), "karo mite");
  ids.push_back(400);
  const std::string msg = error_of([&] { tok_->decode(ids.data(), ids.size()); });
  EXPECT_CONTAINS(msg, "400");
}

// Each byte that is not part of valid UTF-8 comes back as U+FFFD, and invalid_utf8_bytes counts
// exactly those bytes: the count in tokenize's warnings is what the model changed.
TEST_F(SentencePieceTest, InvalidUtf8BytesComeBackAsReplacementCharacters) {
  const std::string r = "\xef\xbf\xbd";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"caf\xe9", "caf" + r},                   // Latin-1
      {"\xe2\x82\xac", "\xe2\x82\xac"},          // valid
      {"\xe2\x82 x", r + r + " x"},              // cut short
      {"\xc0\xaf", r + r},                       // overlong
      {"\xed\xa0\x80", r + r + r},               // a surrogate
      {"\xf4\x90\x80\x80", r + r + r + r},       // above U+10FFFF
      {"\xf0\x9f\x99", r + r + r},               // cut short
      {"a\x80\x80" "b", "a" + r + r + "b"},      // stray continuation bytes
      {"\xf8\x88\x80\x80\x80", r + r + r + r + r},
      {r, r},                                    // U+FFFD itself is valid
  };
  for (const auto& [in, out] : cases) {
    const auto ids = encode(*tok_, in);
    EXPECT_EQ(tok_->decode(ids.data(), ids.size()), out);
    size_t first;
    EXPECT_EQ(invalid_utf8_bytes(in, &first), int64_t(out.size() - in.size()) / 2) << out;
  }
  size_t first;
  EXPECT_EQ(invalid_utf8_bytes("ab\xff" "c\xfe", &first), 2);
  EXPECT_EQ(first, 2u);
  EXPECT_EQ(invalid_utf8_bytes("fine \xc3\xa9", &first), 0);
  EXPECT_EQ(first, 7u);
  // Random bytes, and random UTF-8 with bytes flipped: every bad byte grows by two.
  Rng rng(17);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text = trial % 2 ? random_bytes(300, trial)
                                 : "naïve café — 日本語 🙂 " + word_corpus(1, trial)[0];
    if (trial % 2 == 0)
      for (int k = 0; k < 5; ++k) text[rng.below(text.size())] = char(0x80 + rng.below(128));
    const auto ids = encode(*tok_, text);
    EXPECT_EQ(tok_->decode(ids.data(), ids.size()).size(),
              text.size() + 2 * size_t(invalid_utf8_bytes(text, &first)))
        << "trial " << trial;
  }
}

TEST_F(SentencePieceTest, ModelBytesReloadToTheSameTokenizer) {
  const auto again = sentencepiece_from_bytes(tok_->model_bytes(), "test");
  EXPECT_EQ(again->model_hash(), tok_->model_hash());
  EXPECT_EQ(again->vocab_size(), tok_->vocab_size());
  const std::string text = word_corpus(5, 11)[4] + "日本 🙂";
  EXPECT_EQ(encode(*again, text), encode(*tok_, text));

  const std::string path = test::temp_dir("sp_reload") + "/m.model";
  std::ofstream(path, std::ios::binary) << tok_->model_bytes();
  EXPECT_EQ(encode(*load_sentencepiece(path), text), encode(*tok_, text));
}

TEST_F(SentencePieceTest, DatasetTokenizerMustMatchTheHash) {
  const std::string bytes = tok_->model_bytes();
  EXPECT_EQ(tokenizer_for_dataset("sentencepiece", bytes, tok_->model_hash(), "d/tokenizer.model")
                ->model_hash(),
            tok_->model_hash());
  const std::string msg = error_of(
      [&] { tokenizer_for_dataset("sentencepiece", bytes, "0123abcd", "d/tokenizer.model"); });
  EXPECT_CONTAINS(msg, "d/tokenizer.model");
  EXPECT_CONTAINS(msg, "0123abcd");
  EXPECT_CONTAINS(msg, tok_->model_hash());

  EXPECT_EQ(tokenizer_for_dataset("byte", "", "byte-v1", "d")->name(), "byte");
  EXPECT_CONTAINS(error_of([] { tokenizer_for_dataset("byte", "", "byte-v2", "d"); }), "byte-v2");
  const std::string unknown = error_of([] { tokenizer_for_dataset("wordpiece", "", "", "d"); });
  EXPECT_CONTAINS(unknown, "wordpiece");
}

TEST(SentencePieceLoad, NonModelFilesAreRefusedByName) {
  const std::string dir = test::temp_dir("sp_load");
  for (const std::string& content : {std::string("this is not a model\n"), std::string()}) {
    const std::string path = dir + "/bad.model";
    std::ofstream(path, std::ios::binary) << content;
    const std::string msg = error_of([&] { load_sentencepiece(path); });
    EXPECT_CONTAINS(msg, path);
    EXPECT_CONTAINS(msg, "not a SentencePiece model");
  }
  const std::string missing = dir + "/missing.model";
  const std::string msg = error_of([&] { load_sentencepiece(missing); });
  EXPECT_CONTAINS(msg, missing);
}

TEST(SentencePieceTrain, UnigramModelsRoundTripToo) {
  SentencePieceTraining opts;
  opts.vocab_size = 320;
  opts.model_type = "unigram";
  opts.threads = 1;
  const auto tok = train_sentencepiece(word_corpus(100, 13), opts);
  EXPECT_EQ(tok->vocab_size(), 320);
  const std::string text = word_corpus(2, 21)[1] + "ß 🙂";
  const auto ids = encode(*tok, text);
  EXPECT_EQ(tok->decode(ids.data(), ids.size()), text);
}

TEST(SentencePieceTrain, BadOptionsAndEmptyInputAreRefused) {
  SentencePieceTraining opts;
  opts.model_type = "word";
  EXPECT_CONTAINS(error_of([&] { train_sentencepiece(word_corpus(2, 1), opts); }), "word");
  opts.model_type = "bpe";
  EXPECT_CONTAINS(error_of([&] { train_sentencepiece({"", "\n\n"}, opts); }), "no text");
}

// Encoding speed, printed only: run with --gtest_also_run_disabled_tests.
TEST(TokenizerSpeed, DISABLED_EncodeMegabytesPerSecond) {
  auto mbps = [](const Tokenizer& t, const std::string& text) {
    std::vector<uint32_t> ids;
    t.encode(text, &ids);  // warm: the timed run writes into memory already mapped
    ids.clear();
    const auto t0 = std::chrono::steady_clock::now();
    t.encode(text, &ids);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return text.size() / 1e6 / s;
  };
  const std::vector<std::string> docs = word_corpus(12000, 1);  // ~800 B each, ~10 MB
  std::string text;
  for (const auto& d : docs) text += d;
  const auto byte = make_byte_tokenizer();
  SentencePieceTraining opts;
  opts.vocab_size = 2000;
  const auto sp = train_sentencepiece(word_corpus(2000, 2), opts);
  std::printf("byte encode: %.0f MB/s over %.1f MB\n", mbps(*byte, text), text.size() / 1e6);
  std::printf("sentencepiece (bpe, vocab 2000) encode, one %.1f MB string: %.1f MB/s\n",
              text.size() / 1e6, mbps(*sp, text));
  std::vector<uint32_t> ids;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& d : docs) sp->encode(d, &ids);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("sentencepiece (bpe, vocab 2000) encode, %zu documents of ~%zu B: %.1f MB/s\n",
              docs.size(), text.size() / docs.size(), text.size() / 1e6 / s);
}

}  // namespace
}  // namespace longctx
