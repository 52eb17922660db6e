#include "data/dataset.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "data/dataset_check.h"
#include "data/tokenizer.h"

namespace longctx {

namespace fs = std::filesystem;

std::string shard_path(const std::string& dir, const ShardEntry& e) {
  return (fs::path(dir) / e.name).string();
}

std::string manifest_path(const std::string& dir) { return (fs::path(dir) / kManifestName).string(); }

Manifest resolve_dataset(const std::string& path, std::string* dir) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    *dir = path;
    return read_manifest(path);
  }
  glob_t g{};
  const int rc = ::glob(path.c_str(), 0, nullptr, &g);
  std::vector<std::string> matches;
  if (rc == 0) matches.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && matches.empty()))
    throw Error(str("no dataset at '", path,
                    "': it is neither a directory nor a glob matching shard files"));
  if (rc != 0) throw Error(str("cannot expand the glob '", path, "'"));

  const fs::path parent = fs::path(matches[0]).parent_path();
  *dir = parent.empty() ? "." : parent.string();
  std::set<std::string> names;
  for (const std::string& f : matches) {
    if (fs::path(f).parent_path() != parent)
      throw Error(str("'", path, "' matches files in more than one directory ('", matches[0],
                      "' and '", f, "'); a dataset is one directory"));
    names.insert(fs::path(f).filename().string());
  }
  Manifest m = read_manifest(*dir);
  for (const std::string& n : names)
    if (std::none_of(m.shards.begin(), m.shards.end(),
                     [&](const ShardEntry& e) { return e.name == n; }))
      throw Error(str("'", (parent / n).string(), "' matches '", path,
                      "' but is not a shard listed in '", manifest_path(*dir), "'"));
  m.shards.erase(std::remove_if(m.shards.begin(), m.shards.end(),
                                [&](const ShardEntry& e) { return !names.count(e.name); }),
                 m.shards.end());
  return m;
}

std::vector<std::string> shard_disagreements(const ShardReader& r, const ShardEntry& e,
                                             const Manifest& m, const std::string& dir) {
  std::vector<std::string> out;
  const std::string mp = manifest_path(dir);
  auto differ = [&](const char* key, const std::string& got, const std::string& want) {
    if (got != want)
      out.push_back(str("'", r.path(), "' has ", key, " ", got, ", '", mp, "' says ", want));
  };
  const ShardAttrs &a = r.attrs(), &w = m.attrs;
  auto q = [](const std::string& s) { return "'" + s + "'"; };
  differ("vocab_size", str(a.vocab_size), str(w.vocab_size));
  differ("tokenizer", q(a.tokenizer), q(w.tokenizer));
  differ("tokenizer_hash", q(a.tokenizer_hash), q(w.tokenizer_hash));
  differ("bos_id", str(a.bos_id), str(w.bos_id));
  differ("eos_id", str(a.eos_id), str(w.eos_id));
  differ("pad_id", str(a.pad_id), str(w.pad_id));
  if (r.has_labels() != m.has_labels)
    out.push_back(r.has_labels()
                      ? str("'", r.path(), "' has labels, '", mp, "' says the dataset has none")
                      : str("'", r.path(), "' has no labels, '", mp, "' lists labels"));
  if (r.n_tokens() != e.tokens)
    out.push_back(str("'", mp, "' says ", e.name, " has ", e.tokens, " tokens, the shard has ",
                      r.n_tokens()));
  if (r.n_docs() != e.docs)
    out.push_back(str("'", mp, "' says ", e.name, " has ", e.docs, " documents, the shard has ",
                      r.n_docs()));
  return out;
}

std::unique_ptr<Tokenizer> dataset_tokenizer(const std::string& dir, const Manifest& m) {
  std::string origin = manifest_path(dir), bytes;
  if (!m.tokenizer_model.empty()) {
    origin = (fs::path(dir) / m.tokenizer_model).string();
    bytes = read_file(origin);
  }
  auto tok = tokenizer_for_dataset(m.attrs.tokenizer, bytes, m.attrs.tokenizer_hash, origin);
  if (tok->vocab_size() != m.attrs.vocab_size)
    throw Error(str("the ", tok->name(), " tokenizer of '", origin, "' has vocab_size ",
                    tok->vocab_size(), ", '", manifest_path(dir), "' says ",
                    m.attrs.vocab_size));
  return tok;
}

struct Dataset::Impl {
  std::string dir;
  Manifest manifest;
  std::vector<std::unique_ptr<ShardReader>> shards;
  // Global numbers of each shard's first token and document; one more entry holds the totals.
  std::vector<int64_t> token_start{0}, doc_start{0};

  // The shard holding global item x, given the cumulative starts (the last shard starting at or
  // before x, so empty shards are skipped).
  static int shard_of(const std::vector<int64_t>& start, int64_t x) {
    return int(std::upper_bound(start.begin(), start.end() - 1, x) - start.begin()) - 1;
  }
};

Dataset::Dataset(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.manifest = resolve_dataset(path, &m.dir);
  for (const ShardEntry& e : m.manifest.shards) {
    const std::string sp = shard_path(m.dir, e);
    if (!fs::exists(sp))
      throw Error(str("shard '", sp, "' listed in '", manifest_path(m.dir), "' is missing"));
    auto r = std::make_unique<ShardReader>(sp);
    const auto problems = shard_disagreements(*r, e, m.manifest, m.dir);
    if (!problems.empty()) throw Error(problems.front());
    m.token_start.push_back(m.token_start.back() + r->n_tokens());
    m.doc_start.push_back(m.doc_start.back() + r->n_docs());
    m.shards.push_back(std::move(r));
  }
}

Dataset::~Dataset() = default;

const std::string& Dataset::dir() const { return impl_->dir; }
const Manifest& Dataset::manifest() const { return impl_->manifest; }
const ShardAttrs& Dataset::attrs() const { return impl_->manifest.attrs; }
int64_t Dataset::n_tokens() const { return impl_->token_start.back(); }
int64_t Dataset::n_docs() const { return impl_->doc_start.back(); }
int Dataset::n_shards() const { return int(impl_->shards.size()); }
const ShardReader& Dataset::shard(int i) const { return *impl_->shards.at(size_t(i)); }

void Dataset::read_tokens(int64_t begin, int64_t n, int32_t* out) const {
  const Impl& m = *impl_;
  if (begin < 0 || n < 0 || begin + n > n_tokens())
    throw Error(str("dataset '", m.dir, "': tokens [", begin, ", ", begin + n,
                    ") are out of range (", n_tokens(), " tokens)"));
  if (n == 0) return;
  for (int i = Impl::shard_of(m.token_start, begin); n > 0; ++i) {
    const int64_t local = begin - m.token_start[size_t(i)];
    const int64_t k = std::min(n, m.shards[size_t(i)]->n_tokens() - local);
    m.shards[size_t(i)]->read_tokens(local, k, out);
    begin += k;
    out += k;
    n -= k;
  }
}

void Dataset::doc_range(int64_t d, int64_t* first, int64_t* last) const {
  const Impl& m = *impl_;
  if (d < 0 || d >= n_docs())
    throw Error(str("dataset '", m.dir, "': document ", d, " is out of range (", n_docs(),
                    " documents)"));
  const int i = Impl::shard_of(m.doc_start, d);
  uint64_t off[2];
  const ShardReader& shard = *m.shards[size_t(i)];
  const int64_t local = d - m.doc_start[size_t(i)];
  shard.read_offsets(local, 2, off);
  if (off[0] > off[1] || off[1] > uint64_t(shard.n_tokens()))
    throw Error(str("'", shard.path(), "': doc_offsets[", local, "..", local + 1, "] = ", off[0],
                    ", ", off[1], " are not ascending within the ", shard.n_tokens(),
                    " tokens (run `longctx data verify`)"));
  *first = m.token_start[size_t(i)] + int64_t(off[0]);
  *last = m.token_start[size_t(i)] + int64_t(off[1]);
}

int32_t Dataset::label(int64_t d) const {
  const Impl& m = *impl_;
  if (!m.manifest.has_labels) throw Error(str("dataset '", m.dir, "' has no labels"));
  if (d < 0 || d >= n_docs())
    throw Error(str("dataset '", m.dir, "': document ", d, " is out of range (", n_docs(),
                    " documents)"));
  const int i = Impl::shard_of(m.doc_start, d);
  int32_t l = 0;
  m.shards[size_t(i)]->read_labels(d - m.doc_start[size_t(i)], 1, &l);
  return l;
}

std::unique_ptr<Tokenizer> Dataset::tokenizer() const {
  return dataset_tokenizer(impl_->dir, impl_->manifest);
}

}  // namespace longctx
