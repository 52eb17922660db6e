// One tokenized HDF5 shard (format "longctx-tokens", version 1):
//   /tokens       1-D uint16 (vocab_size ≤ 65536) or uint32, chunked (written uncompressed, so
//                 that random window reads stay cheap; readers accept any HDF5 filter)
//   /doc_offsets  1-D uint64, n_docs + 1 entries: document d is tokens[off[d], off[d+1])
//   /labels       optional 1-D int32, one per document
//   attributes on the root group: format, version, vocab_size, tokenizer, tokenizer_hash,
//                 bos_id, eos_id, pad_id
// Every document is stored as BOS, its text's ids, EOS; so packing windows across documents
// is plain concatenation, and the EOS ids are the document boundaries of a packed window.
//
// HDF5 calls are serialized by one process-wide lock (HDF5 is thread-safe only in some builds);
// a reader or writer object itself is used by one thread at a time.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace longctx {

inline constexpr const char* kShardFormat = "longctx-tokens";
inline constexpr int kShardVersion = 1;

struct ShardAttrs {
  int64_t vocab_size = 0;
  std::string tokenizer;       // "byte" | "sentencepiece"
  std::string tokenizer_hash;  // Tokenizer::model_hash()
  int32_t bos_id = -1, eos_id = -1, pad_id = -1;
  bool operator==(const ShardAttrs& o) const {
    return vocab_size == o.vocab_size && tokenizer == o.tokenizer &&
           tokenizer_hash == o.tokenizer_hash && bos_id == o.bos_id && eos_id == o.eos_id &&
           pad_id == o.pad_id;
  }
};

// Writes a shard document by document with bounded memory (datasets are extended chunk by
// chunk). The file appears under `path` only when finish() succeeds: until then it is written
// under a temporary name in the same directory, which the destructor removes if finish() was
// never reached.
class ShardWriter {
 public:
  ShardWriter(const std::string& path, const ShardAttrs& attrs, bool with_labels);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Stores ids as given (the caller adds BOS and EOS). ids must be < attrs.vocab_size (Error
  // naming the id otherwise, and the shard is left as it was); `label` is ignored without
  // labels and must be ≥ 0 with them.
  void add_document(const uint32_t* ids, int64_t n, int32_t label = -1);
  int64_t tokens() const;
  int64_t docs() const;
  // Flushes, closes, fsyncs and renames into place.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Opens a shard and checks its format, version and the shapes of its datasets; every error
// names the file and what was expected (not an HDF5 file, another format or version, a missing
// dataset, offsets whose count disagrees with the documents, ...).
class ShardReader {
 public:
  explicit ShardReader(const std::string& path);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const std::string& path() const;
  const ShardAttrs& attrs() const;
  int64_t n_tokens() const;
  int64_t n_docs() const;
  bool has_labels() const;
  int token_bytes() const;  // 2 (uint16) or 4 (uint32)

  // tokens[begin, begin + n) into out (hyperslab read). Range errors name the file. uint32
  // ids keep their bits: an id ≥ 2^31 (never valid) comes out negative, and uint32_t(out[i])
  // is the stored id whatever it is.
  void read_tokens(int64_t begin, int64_t n, int32_t* out) const;
  // doc_offsets[first, first + n)
  void read_offsets(int64_t first, int64_t n, uint64_t* out) const;
  // labels[first, first + n)
  void read_labels(int64_t first, int64_t n, int32_t* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longctx
