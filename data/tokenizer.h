// Tokenizers turn text into token ids and back. Two kinds:
//   byte:          built in; ids 0..255 are the bytes, then BOS = 256, EOS = 257, PAD = 258
//                  (vocab 259). Lossless for any bytes, UTF-8 or not.
//   sentencepiece: a SentencePiece model (BPE or unigram), trained on a corpus or loaded from a
//                  file. Its serialized model travels with every dataset made with it, and the
//                  model's hash is stamped on the shards, so a dataset can always be decoded and
//                  a mismatched model is refused. Lossless for UTF-8 text; each byte of
//                  invalid UTF-8 comes back as U+FFFD (see invalid_utf8_bytes).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"

namespace longctx {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;  // "byte" | "sentencepiece"
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int pad_id() const = 0;
  // Appends the ids of `text` to *out (no BOS/EOS added).
  virtual void encode(std::string_view text, std::vector<uint32_t>* out) const = 0;
  // The text of ids; BOS, EOS and PAD are dropped. Ids ≥ vocab_size throw, naming the id.
  virtual std::string decode(const uint32_t* ids, size_t n) const = 0;
  // Identity of the model: hash of its serialized bytes ("byte-v1" for the byte tokenizer).
  virtual std::string model_hash() const = 0;
  // The serialized model ("" for byte), stored beside the shards as `tokenizer.model`.
  virtual std::string model_bytes() const = 0;
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();

// A SentencePiece model from a .model file; Error naming the file when it is missing or is not
// a SentencePiece model.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
// The same from the serialized bytes; `origin` names where they came from in errors.
std::unique_ptr<Tokenizer> sentencepiece_from_bytes(const std::string& model_bytes,
                                                    const std::string& origin);

struct SentencePieceTraining {
  int vocab_size = 8000;
  std::string model_type = "bpe";  // bpe | unigram
  int64_t max_sentences = 2000000;  // input lines sampled for training
  int threads = 0;                  // 0: hardware concurrency
  uint64_t seed = 1234;             // which lines are sampled beyond max_sentences
};
// Trains a model on the given documents (each split into lines for SentencePiece's trainer),
// with BOS/EOS/PAD defined, byte fallback on (every input byte encodable) and returns it.
std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& documents,
                                               const SentencePieceTraining& opts);

// The training input of SentencePiece, gathered from documents streamed one at a time: their
// non-empty lines (cut to the trainer's line limit), a seeded uniform sample of at most
// max_sentences of them.
class TrainingLines {
 public:
  TrainingLines(int64_t max_sentences, uint64_t seed);
  void add_document(std::string_view doc);
  const std::vector<std::string>& lines() const { return lines_; }

 private:
  int64_t max_, seen_ = 0;
  Rng rng_;
  std::vector<std::string> lines_;
};
// The same from lines already gathered (opts.max_sentences and opts.seed are not used).
std::unique_ptr<Tokenizer> train_sentencepiece(const TrainingLines& lines,
                                               const SentencePieceTraining& opts);

// The bytes of `text` that are not part of a valid UTF-8 sequence (overlong forms, surrogates
// and code points above U+10FFFF included), and in *first the offset of the first of them.
// SentencePiece replaces each such byte with U+FFFD, which byte fallback stores as its three
// bytes: these are the bytes a SentencePiece tokenizer cannot give back.
int64_t invalid_utf8_bytes(std::string_view text, size_t* first);

// The tokenizer a dataset was made with, from its name and (for sentencepiece) the model bytes;
// Error naming `origin` when the name is unknown or the bytes do not hash to `expected_hash`.
std::unique_ptr<Tokenizer> tokenizer_for_dataset(const std::string& name,
                                                 const std::string& model_bytes,
                                                 const std::string& expected_hash,
                                                 const std::string& origin);

}  // namespace longctx
