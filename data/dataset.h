// A tokenized dataset: a directory holding HDF5 shards, `manifest.json` and, for SentencePiece,
// `tokenizer.model`. The manifest lists the shards in order with their token and document counts
// and checksums:
//   {"format": "longctx-dataset", "version": 1,
//    "tokenizer": {"name": "byte", "hash": "byte-v1", "model_file": ""},
//    "vocab_size": 259, "bos_id": 256, "eos_id": 257, "pad_id": 258,
//    "tokens": N, "docs": D, "labels": ["neg", "pos"] | null,
//    "shards": [{"name": "shard_00000.h5", "tokens": n, "docs": d, "checksum": "<xxh3-128>"}]}
// Tokens and documents are numbered globally across the shards, in manifest order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/shard.h"

namespace longctx {

inline constexpr const char* kManifestName = "manifest.json";
inline constexpr const char* kManifestFormat = "longctx-dataset";
inline constexpr int kManifestVersion = 1;
inline constexpr const char* kTokenizerModelName = "tokenizer.model";

struct ShardEntry {
  std::string name;  // file name inside the dataset directory
  int64_t tokens = 0, docs = 0;
  std::string checksum;  // hash_file() of the shard
};

struct Manifest {
  ShardAttrs attrs;               // what every shard's attributes must equal
  std::string tokenizer_model;    // file name of the model beside the shards ("" for byte)
  std::vector<std::string> labels;  // class names; empty: unlabeled (labels are ids into it)
  bool has_labels = false;
  std::vector<ShardEntry> shards;
  int64_t tokens() const;
  int64_t docs() const;
};

// Reads and validates DIR/manifest.json (Error naming the file and the key on any problem).
Manifest read_manifest(const std::string& dir);
// Writes DIR/manifest.json atomically.
void write_manifest(const std::string& dir, const Manifest& m);

class Dataset {
 public:
  // `path`: a dataset directory, or a glob of shard files inside one (a subset of its manifest,
  // kept in manifest order). Opens every shard and checks it against the manifest (attributes,
  // token and document counts); an error names the shard and the disagreement. Checksums are
  // not computed here (see verify_dataset).
  explicit Dataset(const std::string& path);
  ~Dataset();
  Dataset(const Dataset&) = delete;
  Dataset& operator=(const Dataset&) = delete;

  const std::string& dir() const;
  const Manifest& manifest() const;  // restricted to the opened shards
  const ShardAttrs& attrs() const;
  int64_t n_tokens() const;
  int64_t n_docs() const;
  int n_shards() const;
  const ShardReader& shard(int i) const;

  // Global tokens [begin, begin + n), across shard boundaries.
  void read_tokens(int64_t begin, int64_t n, int32_t* out) const;
  // Global token range [first, last) of document d.
  void doc_range(int64_t d, int64_t* first, int64_t* last) const;
  int32_t label(int64_t d) const;  // Error when the dataset has no labels

  // The tokenizer that made the dataset (tokenizer.model for sentencepiece), checked against
  // the manifest's hash.
  std::unique_ptr<class Tokenizer> tokenizer() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Full check of a dataset: manifest vs shards, each shard's checksum, every token id <
// vocab_size, offsets starting at 0, non-decreasing and ending at the token count, labels within
// the label names. Returns the problems found, each naming the file (empty: valid).
std::vector<std::string> verify_dataset(const std::string& path);

}  // namespace longctx
