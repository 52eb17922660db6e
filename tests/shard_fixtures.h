// Helpers for the shard and dataset tests: documents from a seed, shards and datasets written
// with ShardWriter and write_manifest, and raw HDF5 edits that make files our writer refuses to.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hash.h"
#include "data/dataset.h"
#include "data/hdf5_util.h"
#include "data/shard.h"

namespace longctx::test {

using Doc = std::vector<uint32_t>;

inline ShardAttrs byte_attrs() {
  ShardAttrs a;
  a.vocab_size = 259;
  a.tokenizer = "byte";
  a.tokenizer_hash = "byte-v1";
  a.bos_id = 256;
  a.eos_id = 257;
  a.pad_id = 258;
  return a;
}

// n documents of 0..max_len random ids below vocab.
inline std::vector<Doc> make_docs(uint64_t seed, int n, int64_t vocab, int max_len) {
  std::mt19937_64 rng(seed);
  std::vector<Doc> docs(n);
  for (Doc& d : docs) {
    d.resize(rng() % (max_len + 1));
    for (uint32_t& x : d) x = uint32_t(rng() % uint64_t(vocab));
  }
  return docs;
}

// Labeled when `labels` is non-empty or with_labels (a labeled shard without documents).
inline void write_shard(const std::string& path, const ShardAttrs& a, const std::vector<Doc>& docs,
                        const std::vector<int32_t>& labels = {}, bool with_labels = false) {
  ShardWriter w(path, a, with_labels || !labels.empty());
  for (size_t i = 0; i < docs.size(); ++i)
    w.add_document(docs[i].data(), int64_t(docs[i].size()), labels.empty() ? -1 : labels[i]);
  w.finish();
}

inline std::vector<int32_t> concat(const std::vector<Doc>& docs) {
  std::vector<int32_t> all;
  for (const Doc& d : docs) all.insert(all.end(), d.begin(), d.end());
  return all;
}

// A dataset directory of shards (one list of documents each) and its manifest.
inline Manifest write_dataset(const std::string& dir, const ShardAttrs& a,
                              const std::vector<std::vector<Doc>>& shards,
                              const std::vector<std::vector<int32_t>>& labels = {},
                              const std::vector<std::string>& label_names = {}) {
  Manifest m;
  m.attrs = a;
  m.has_labels = !labels.empty();
  m.labels = label_names;
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "shard_%05zu.h5", i);
    const std::string path = dir + "/" + name;
    write_shard(path, a, shards[i], labels.empty() ? std::vector<int32_t>{} : labels[i],
                !labels.empty());
    int64_t tokens = 0;
    for (const Doc& d : shards[i]) tokens += int64_t(d.size());
    m.shards.push_back({name, tokens, int64_t(shards[i].size()), hash_file(path)});
  }
  write_manifest(dir, m);
  return m;
}

// The message of the Error that f throws ("(no error)" when it does not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "'" << (text) << "'"

// Raw edits of an existing HDF5 file (for shards our writer would never produce).
inline void set_int_attr(const std::string& path, const char* name, int64_t value) {
  auto lock = hdf5_lock();
  H5Handle f = h5_file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  ASSERT_TRUE(f.valid()) << path;
  H5Handle attr = h5_attr(H5Aopen(f.get(), name, H5P_DEFAULT));
  ASSERT_TRUE(attr.valid()) << name;
  ASSERT_GE(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), 0);
}

inline void write_u64(const std::string& path, const char* dataset, hsize_t index,
                      uint64_t value) {
  auto lock = hdf5_lock();
  H5Handle f = h5_file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  ASSERT_TRUE(f.valid()) << path;
  H5Handle d = h5_dataset(H5Dopen2(f.get(), dataset, H5P_DEFAULT));
  ASSERT_TRUE(d.valid()) << dataset;
  H5Handle space = h5_space(H5Dget_space(d.get()));
  const hsize_t one = 1;
  H5Handle mem = h5_space(H5Screate_simple(1, &one, nullptr));
  H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &index, nullptr, &one, nullptr);
  ASSERT_GE(H5Dwrite(d.get(), H5T_NATIVE_UINT64, mem.get(), space.get(), H5P_DEFAULT, &value), 0);
}

}  // namespace longctx::test
