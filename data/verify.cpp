// verify_dataset: every check a dataset can fail, each problem reported with the file it is in.
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/hash.h"
#include "data/dataset.h"
#include "data/dataset_check.h"
#include "data/tokenizer.h"

namespace longctx {

namespace {

constexpr int64_t kBlock = int64_t(1) << 20;  // entries per read while streaming a dataset

void check_ids(const ShardReader& r, int64_t vocab, std::vector<std::string>* problems) {
  std::vector<int32_t> buf(size_t(std::min(kBlock, r.n_tokens())));
  int64_t bad = 0, first = -1;
  uint32_t first_id = 0;
  for (int64_t at = 0; at < r.n_tokens(); at += kBlock) {
    const int64_t n = std::min(kBlock, r.n_tokens() - at);
    r.read_tokens(at, n, buf.data());
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t id = uint32_t(buf[size_t(i)]);  // the stored id, whatever its width
      if (id >= uint64_t(vocab) && bad++ == 0) {
        first = at + i;
        first_id = id;
      }
    }
  }
  if (bad > 0)
    problems->push_back(str("'", r.path(), "': token ", first, " is id ", first_id,
                            ", not below vocab_size ", vocab, " (", bad,
                            bad == 1 ? " such token)" : " such tokens)"));
}

// Offsets start at 0 and end at the token count (ShardReader checks both on open); here: they
// never decrease.
void check_offsets(const ShardReader& r, std::vector<std::string>* problems) {
  const int64_t n = r.n_docs() + 1;
  std::vector<uint64_t> buf(size_t(std::min(kBlock, n)));
  uint64_t prev = 0;
  for (int64_t at = 0; at < n; at += kBlock) {
    const int64_t k = std::min(kBlock, n - at);
    r.read_offsets(at, k, buf.data());
    for (int64_t i = 0; i < k; ++i) {
      if (buf[size_t(i)] < prev) {
        problems->push_back(str("'", r.path(), "': doc_offsets[", at + i, "] = ", buf[size_t(i)],
                                " is below doc_offsets[", at + i - 1, "] = ", prev,
                                " (offsets must not decrease)"));
        return;
      }
      prev = buf[size_t(i)];
    }
  }
}

void check_labels(const ShardReader& r, const Manifest& m, const std::string& dir,
                  std::vector<std::string>* problems) {
  const int64_t n_names = int64_t(m.labels.size());
  std::vector<int32_t> buf(size_t(std::min(kBlock, r.n_docs())));
  for (int64_t at = 0; at < r.n_docs(); at += kBlock) {
    const int64_t k = std::min(kBlock, r.n_docs() - at);
    r.read_labels(at, k, buf.data());
    for (int64_t i = 0; i < k; ++i) {
      if (buf[size_t(i)] < 0 || buf[size_t(i)] >= n_names) {
        problems->push_back(str("'", r.path(), "': document ", at + i, " has label ",
                                buf[size_t(i)], ", expected 0..", n_names - 1, " (the ", n_names,
                                " label names in '", manifest_path(dir), "')"));
        return;
      }
    }
  }
}

}  // namespace

std::vector<std::string> verify_dataset(const std::string& path) {
  std::vector<std::string> problems;
  std::string dir;
  Manifest m;
  try {
    m = resolve_dataset(path, &dir);
  } catch (const Error& e) {
    return {e.what()};  // nothing further can be checked without the manifest
  }
  try {
    dataset_tokenizer(dir, m);
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
  for (const ShardEntry& e : m.shards) {
    const std::string sp = shard_path(dir, e);
    if (!std::filesystem::exists(sp)) {
      problems.push_back(str("shard '", sp, "' listed in '", manifest_path(dir), "' is missing"));
      continue;
    }
    // Each shard's checks go on after a problem: one bad shard hides nothing in the others.
    try {
      const std::string sum = hash_file(sp);
      if (sum != e.checksum)
        problems.push_back(str("'", sp, "' has checksum ", sum, ", '", manifest_path(dir),
                               "' says ", e.checksum, " (changed since it was written?)"));
      ShardReader r(sp);
      for (std::string& p : shard_disagreements(r, e, m, dir)) problems.push_back(std::move(p));
      check_ids(r, m.attrs.vocab_size, &problems);
      check_offsets(r, &problems);
      if (r.has_labels() && m.has_labels) check_labels(r, m, dir, &problems);
    } catch (const Error& err) {
      problems.push_back(err.what());
    } catch (const std::exception& err) {  // e.g. a filesystem or allocation failure
      problems.push_back(str("'", sp, "': ", err.what()));
    }
  }
  return problems;
}

}  // namespace longctx
