// Corpus -> tokenized dataset: the work behind `longctx tokenize`.
//
// Reads the corpus (see data/corpus.h) document by document, encodes each as BOS, ids, EOS and
// writes OUT/train and, with a validation fraction, OUT/val: each a dataset directory of shards
// (shard_00000.h5, ...), tokenizer.model for SentencePiece, and manifest.json, written last.
// Whether document i (counting non-empty documents in reading order) goes to val depends only on
// (seed, i). A run that fails leaves no manifest behind and removes the shards it wrote.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/corpus.h"

namespace longctx {

struct TokenizeOptions {
  std::vector<std::string> inputs;  // text files, directories, *.jsonl files
  std::string out_dir;
  std::string tokenizer = "byte";  // byte | sentencepiece
  std::string spm_model;           // sentencepiece: a model file to use, or ...
  int spm_train_vocab = 0;         // ... the vocab size of a model to train on the train split
  std::string spm_type = "bpe";    // bpe | unigram, for training
  int64_t spm_max_sentences = 2000000;  // lines sampled for training
  int64_t shard_tokens = 67108864;  // a new shard starts once the current one holds this many
  double val_fraction = 0;          // in [0, 1)
  std::string label_field;          // JSONL key of the class label; "" for none
  // SentencePiece only: what to do with a document holding invalid UTF-8, whose bad bytes the
  // model would store as U+FFFD: warn (the default; "" means it), error or skip.
  std::string invalid_utf8;
  uint64_t seed = 1234;
  bool force = false;     // replace datasets already in out_dir
  bool progress = false;  // progress lines on stderr
  // Receives each warning (a thing skipped, a document changed); null: "warning: ..." on stderr.
  std::function<void(const std::string&)> warn;
};

struct SplitSummary {
  int64_t docs = 0, tokens = 0;
  int shards = 0;
};

struct TokenizeSummary {
  SplitSummary train, val;
  int64_t empty_docs = 0;  // skipped
  CorpusSkips skipped;     // what listing the inputs skipped
  // Documents holding invalid UTF-8 (SentencePiece only) and their invalid bytes: stored with
  // each such byte as U+FFFD, or left out with --invalid-utf8 skip.
  int64_t bad_utf8_docs = 0, bad_utf8_bytes = 0;
  int64_t bytes = 0;       // corpus bytes read
  double seconds = 0;
  int vocab_size = 0;
  std::vector<std::string> labels;
};

// Usage mistakes in `opts` throw ConfigError; problems with the corpus or the output, Error.
TokenizeSummary tokenize_corpus(const TokenizeOptions& opts);

}  // namespace longctx
