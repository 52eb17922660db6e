// Internal to Dataset and verify_dataset: which shards a path names, and how a shard may
// disagree with its manifest entry.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace longctx {

// The dataset directory of `path` (a directory, or a glob of shard files inside one) into *dir,
// and its manifest restricted to the shards the path names, in manifest order. Error when the
// path names nothing, spans directories or matches a file the manifest does not list.
Manifest resolve_dataset(const std::string& path, std::string* dir);

std::string shard_path(const std::string& dir, const ShardEntry& e);
std::string manifest_path(const std::string& dir);

// Each way the opened shard disagrees with the manifest (attributes, labels, token and document
// counts); empty when it agrees.
std::vector<std::string> shard_disagreements(const ShardReader& r, const ShardEntry& e,
                                             const Manifest& m, const std::string& dir);

// The dataset's tokenizer (tokenizer.model beside the shards for sentencepiece), checked
// against the manifest's hash and vocab_size.
std::unique_ptr<Tokenizer> dataset_tokenizer(const std::string& dir, const Manifest& m);

}  // namespace longctx
