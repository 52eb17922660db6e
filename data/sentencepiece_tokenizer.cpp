// SentencePiece models: loading, training from in-memory documents, encode and decode.
//
// Models are trained with identity normalization, without whitespace collapsing or a dummy
// prefix, and with byte fallback: encode then decode gives back any valid UTF-8 text exactly
// (SentencePiece still replaces each byte of invalid UTF-8 with U+FFFD: see invalid_utf8_bytes).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "data/tokenizer.h"

namespace longctx {
namespace {

// Special ids of the models we train.
constexpr int kUnk = 0, kBos = 1, kEos = 2, kPad = 3;
// SentencePiece's trainer skips sentences longer than 4192 bytes; longer lines are cut below it.
constexpr size_t kMaxLineBytes = 4096;
// SentencePiece encodes long strings several times slower per byte than short ones (1.4 MB/s at
// 300 KB, 4 MB/s at 300 B measured); documents are encoded in pieces of about this size.
constexpr size_t kEncodeChunk = 1024;

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::string bytes, const std::string& origin)
      : bytes_(std::move(bytes)), hash_(hash_bytes(bytes_)) {
    const auto st = sp_.LoadFromSerializedProto(bytes_);
    if (!st.ok())
      throw Error(str("'", origin, "' is not a SentencePiece model (", st.ToString(), ")"));
    const std::pair<const char*, int> specials[] = {
        {"bos", sp_.bos_id()}, {"eos", sp_.eos_id()}, {"pad", sp_.pad_id()}};
    for (const auto& [what, id] : specials)
      if (id < 0)
        throw Error(str("SentencePiece model '", origin, "' defines no ", what,
                        " id; longctx needs BOS, EOS and PAD (train it with --", what,
                        "_id set)"));
    split_at_newlines_ = newline_is_a_boundary();
  }

  std::string name() const override { return "sentencepiece"; }
  int vocab_size() const override { return sp_.GetPieceSize(); }
  int bos_id() const override { return sp_.bos_id(); }
  int eos_id() const override { return sp_.eos_id(); }
  int pad_id() const override { return sp_.pad_id(); }

  void encode(std::string_view text, std::vector<uint32_t>* out) const override {
    std::vector<int> ids;
    while (!text.empty()) {
      size_t n = text.size();
      if (split_at_newlines_ && n > kEncodeChunk)
        n = std::min(text.find('\n', kEncodeChunk - 1), n - 1) + 1;
      const auto st = sp_.Encode(text.substr(0, n), &ids);
      if (!st.ok()) throw Error(str("SentencePiece encode failed: ", st.ToString()));
      out->insert(out->end(), ids.begin(), ids.end());
      text.remove_prefix(n);
    }
  }

  std::string decode(const uint32_t* ids, size_t n) const override {
    const auto vocab = static_cast<uint32_t>(vocab_size());
    std::vector<int> kept;
    kept.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t id = ids[i];
      if (id >= vocab)
        throw Error(str("SentencePiece tokenizer: token id ", id, " at position ", i,
                        " is outside the vocabulary (expected < ", vocab, ")"));
      const int v = static_cast<int>(id);
      if (v != bos_id() && v != eos_id() && v != pad_id()) kept.push_back(v);
    }
    std::string text;
    const auto st = sp_.Decode(kept, &text);
    if (!st.ok()) throw Error(str("SentencePiece decode failed: ", st.ToString()));
    return text;
  }

  std::string model_hash() const override { return hash_; }
  std::string model_bytes() const override { return bytes_; }

 private:
  // Whether encoding the text before and after a newline separately gives the same ids as
  // encoding it whole: true when the newline is kept as its own byte piece, no piece spans it,
  // no dummy prefix is added and whitespace is not normalized. It holds for the models
  // train_sentencepiece makes; other models are encoded whole.
  bool newline_is_a_boundary() const {
    for (int id = 0; id < sp_.GetPieceSize(); ++id)
      if (!sp_.IsByte(id) && sp_.IdToPiece(id).find('\n') != std::string::npos) return false;
    std::vector<std::string> pieces;
    if (!sp_.Encode("\n", &pieces).ok() || pieces != std::vector<std::string>{"<0x0A>"})
      return false;
    if (!sp_.Encode("a", &pieces).ok() || pieces.empty() || pieces[0].rfind("\u2581", 0) == 0)
      return false;
    const std::string probe = " \n  a \n";
    std::vector<int> ids;
    std::string back;
    return sp_.Encode(probe, &ids).ok() && sp_.Decode(ids, &back).ok() && back == probe;
  }

  std::string bytes_, hash_;
  sentencepiece::SentencePieceProcessor sp_;
  bool split_at_newlines_ = false;
};

// The length of the valid UTF-8 sequence at the start of `s`, or 0. The same rules as
// SentencePiece's decoder: shortest form only, no surrogates, nothing above U+10FFFF.
size_t utf8_sequence(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto trail = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return trail(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!trail(1) || !trail(2)) return 0;
    const uint32_t cp = (uint32_t(c & 0x0F) << 12) | (uint32_t(b(1) & 0x3F) << 6);
    return cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!trail(1) || !trail(2) || !trail(3)) return 0;
    const uint32_t cp = (uint32_t(c & 0x07) << 18) | (uint32_t(b(1) & 0x3F) << 12);
    return cp >= 0x10000 && cp <= 0x10FFFF ? 4 : 0;
  }
  return 0;
}

// The longest prefix of `s` of at most `max` bytes that does not cut a UTF-8 sequence.
size_t utf8_cut(std::string_view s, size_t max) {
  if (s.size() <= max) return s.size();
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return cut > 0 ? cut : max;  // no boundary nearby: not UTF-8, cut anywhere
}

class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return lines_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& lines_;
  size_t i_ = 0;
};

}  // namespace

int64_t invalid_utf8_bytes(std::string_view text, size_t* first) {
  int64_t bad = 0;
  *first = text.size();
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_sequence(text.substr(i));
    if (n == 0 && bad++ == 0) *first = i;
    i += n > 0 ? n : 1;  // a bad byte is replaced on its own; decoding resumes at the next one
  }
  return bad;
}

std::unique_ptr<Tokenizer> sentencepiece_from_bytes(const std::string& model_bytes,
                                                    const std::string& origin) {
  return std::make_unique<SentencePieceTokenizer>(model_bytes, origin);
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  return sentencepiece_from_bytes(read_file(model_path), model_path);
}

TrainingLines::TrainingLines(int64_t max_sentences, uint64_t seed)
    : max_(max_sentences), rng_(seed) {
  if (max_sentences <= 0)
    throw Error(str("SentencePiece max_sentences ", max_sentences, " must be positive"));
}

void TrainingLines::add_document(std::string_view doc) {
  while (!doc.empty()) {
    const size_t nl = std::min(doc.find('\n'), doc.size());
    std::string_view line = doc.substr(0, nl);
    doc.remove_prefix(std::min(nl + 1, doc.size()));
    while (!line.empty()) {
      const size_t n = utf8_cut(line, kMaxLineBytes);
      // Reservoir sampling: every line seen so far is kept with the same probability.
      if (seen_ < max_) {
        lines_.emplace_back(line.substr(0, n));
      } else {
        const uint64_t j = rng_.below(static_cast<uint64_t>(seen_) + 1);
        if (j < static_cast<uint64_t>(max_)) lines_[j].assign(line.substr(0, n));
      }
      ++seen_;
      line.remove_prefix(n);
    }
  }
}

std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& documents,
                                               const SentencePieceTraining& opts) {
  TrainingLines lines(opts.max_sentences, opts.seed);
  for (const std::string& doc : documents) lines.add_document(doc);
  return train_sentencepiece(lines, opts);
}

std::unique_ptr<Tokenizer> train_sentencepiece(const TrainingLines& lines,
                                               const SentencePieceTraining& opts) {
  if (opts.model_type != "bpe" && opts.model_type != "unigram")
    throw Error(str("SentencePiece model type '", opts.model_type,
                    "' is not supported (expected bpe or unigram)"));
  if (opts.vocab_size <= kPad + 1)
    throw Error(str("SentencePiece vocab size ", opts.vocab_size, " is too small (expected > ",
                    kPad + 1, ")"));
  if (lines.lines().empty()) throw Error("SentencePiece training: the documents hold no text");

  const int threads = opts.threads > 0
                          ? opts.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", opts.model_type},
      {"vocab_size", std::to_string(opts.vocab_size)},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"unk_id", std::to_string(kUnk)},
      {"bos_id", std::to_string(kBos)},
      {"eos_id", std::to_string(kEos)},
      {"pad_id", std::to_string(kPad)},
      {"input_sentence_size", "0"},  // TrainingLines has sampled, deterministically
      {"num_threads", std::to_string(threads)},
      {"minloglevel", "2"},  // errors come back in the status
  };
  LineIterator it(lines.lines());
  std::string model;
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!st.ok()) throw Error(str("SentencePiece training failed: ", st.ToString()));
  return sentencepiece_from_bytes(model, "trained model");
}

}  // namespace longctx
