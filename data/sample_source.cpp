#include "data/sample_source.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "data/shuffle.h"
#include "data/synthetic.h"
#include "model/cross_entropy.h"

namespace longctx {
namespace {

class SyntheticSource : public SampleSource {
 public:
  explicit SyntheticSource(const Config& cfg)
      : data_(cfg.data.synthetic, cfg.model.vocab_size, cfg.data.seq_len, cfg.run.seed) {}
  int64_t samples_per_epoch() const override { return INT64_MAX; }
  bool has_documents() const override { return data_.has_documents(); }
  void read(int64_t s, const SampleView& out) const override {
    data_.sample(0, s, out.inputs, out.targets, out.doc);
  }

 private:
  SyntheticData data_;
};

// Ids must fit the model; the message names the shard and the token's index in it.
void check_ids(const Dataset& ds, const int32_t* ids, int64_t n, int64_t first, int vocab) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] >= 0 && ids[i] < vocab) continue;
    int64_t t = first + i;
    for (const ShardEntry& sh : ds.manifest().shards) {
      if (t < sh.tokens)
        throw Error(str("dataset '", ds.dir(), "': token ", t, " of shard '", sh.name, "' is ",
                        ids[i], ", outside the vocabulary [0, ", vocab,
                        ") ('model.vocab_size'); run `longctx data verify` on it"));
      t -= sh.tokens;
    }
  }
}

class HDF5Source : public SampleSource {
 public:
  HDF5Source(const Config& cfg, const Dataset& ds)
      : ds_(ds), L_(cfg.data.seq_len), vocab_(cfg.model.vocab_size), seed_(cfg.run.seed) {}

 protected:
  // The order of epoch e: position k of the epoch holds item perm(k).
  int64_t item(int64_t s) const {
    const int64_t W = samples_per_epoch(), epoch = s / W;
    return int64_t(Permutation(uint64_t(W), seed_ ^ splitmix64(0x5EED0000ull + uint64_t(epoch)))(
        uint64_t(s % W)));
  }
  // One window's tokens, reused: read() runs on the loader's thread for every sample.
  static std::vector<int32_t>& buf() {
    thread_local std::vector<int32_t> b;
    return b;
  }
  const Dataset& ds_;
  int64_t L_;
  int vocab_;
  uint64_t seed_;
};

class PackedSource : public HDF5Source {
 public:
  PackedSource(const Config& cfg, const Dataset& ds) : HDF5Source(cfg, ds) {
    windows_ = ds.n_tokens() > L_ ? (ds.n_tokens() - 1) / L_ : 0;
    if (windows_ == 0)
      throw ConfigError(str("'data.seq_len' (", L_, ") is longer than any packed window of '",
                            ds.dir(), "' can be: it holds ", ds.n_tokens(), " tokens, a window "
                            "needs seq_len + 1 = ", L_ + 1));
    eos_ = ds.attrs().eos_id;
  }
  int64_t samples_per_epoch() const override { return windows_; }
  bool has_documents() const override { return true; }
  void read(int64_t s, const SampleView& out) const override {
    const int64_t first = item(s) * L_;
    std::vector<int32_t>& w = buf();
    w.resize(size_t(L_ + 1));
    ds_.read_tokens(first, L_ + 1, w.data());
    check_ids(ds_, w.data(), L_ + 1, first, vocab_);
    std::copy_n(w.data(), L_, out.inputs);
    std::copy_n(w.data() + 1, L_, out.targets);
    if (out.doc) {  // EOS ends its document; the next token starts the next one
      out.doc[0] = 0;
      for (int64_t p = 1; p < L_; ++p) out.doc[p] = out.doc[p - 1] + (w[p - 1] == eos_);
    }
  }

 private:
  int64_t windows_ = 0;
  int32_t eos_ = -1;
};

class DocSource : public HDF5Source {
 public:
  DocSource(const Config& cfg, const Dataset& ds)
      : HDF5Source(cfg, ds), classify_(cfg.objective == Objective::classify),
        n_classes_(cfg.model.n_classes) {
    if (ds.n_docs() == 0)
      throw ConfigError(str("dataset '", ds.dir(), "' ('data.train') holds no documents"));
    pad_ = ds.attrs().pad_id;
    if (classify_) {
      if (!ds.manifest().has_labels)
        throw ConfigError(str("'objective: classify' needs labels, and dataset '", ds.dir(),
                              "' has none (tokenize JSONL with --label-field)"));
      const auto n_labels = int64_t(ds.manifest().labels.size());
      if (n_labels > cfg.model.n_classes)
        throw ConfigError(str("dataset '", ds.dir(), "' has ", n_labels,
                              " labels but 'model.n_classes' is ", cfg.model.n_classes));
    }
  }
  int64_t samples_per_epoch() const override { return ds_.n_docs(); }
  bool has_documents() const override { return true; }
  void read(int64_t s, const SampleView& out) const override {
    const int64_t d = item(s);
    int64_t first = 0, last = 0;
    ds_.doc_range(d, &first, &last);
    // causal_lm reads one token more than it feeds: the last input's target.
    const int64_t n = std::min(last - first, classify_ ? L_ : L_ + 1);
    std::vector<int32_t>& w = buf();
    w.resize(size_t(n));
    ds_.read_tokens(first, n, w.data());
    check_ids(ds_, w.data(), n, first, vocab_);
    const int64_t n_in = std::min(n, L_);
    std::copy_n(w.data(), n_in, out.inputs);
    std::fill(out.inputs + n_in, out.inputs + L_, pad_);
    std::fill(out.targets, out.targets + L_, kIgnoreIndex);
    if (classify_) {
      // The loss indexes the class head with the label: a bad one must stop here.
      const int32_t label = ds_.label(d);
      if (label < 0 || label >= n_classes_)
        throw Error(str("dataset '", ds_.dir(), "': document ", d, " has label ", label,
                        ", outside [0, ", n_classes_, ") ('model.n_classes'); run `longctx data "
                        "verify` on it"));
      out.targets[0] = label;
    } else {
      std::copy_n(w.data() + 1, n - 1, out.targets);
    }
    if (out.doc)  // padding is a document of its own: nothing attends to it
      for (int64_t p = 0; p < L_; ++p) out.doc[p] = p < n_in ? 0 : 1;
  }

 private:
  bool classify_;
  int n_classes_;
  int32_t pad_ = 0;
};

}  // namespace

std::unique_ptr<SampleSource> make_sample_source(const Config& cfg, const Dataset* ds) {
  if (cfg.data.source == DataSource::synthetic) return std::make_unique<SyntheticSource>(cfg);
  LONGCTX_CHECK(ds != nullptr, "make_sample_source: the hdf5 source needs a dataset");
  if (ds->attrs().vocab_size > cfg.model.vocab_size)
    throw ConfigError(str("dataset '", ds->dir(), "' has vocab_size ", ds->attrs().vocab_size,
                          " (tokenizer '", ds->attrs().tokenizer, "'), but 'model.vocab_size' is ",
                          cfg.model.vocab_size, "; set model.vocab_size to at least ",
                          ds->attrs().vocab_size));
  if (cfg.data.packing == Packing::pack) return std::make_unique<PackedSource>(cfg, *ds);
  return std::make_unique<DocSource>(cfg, *ds);
}

}  // namespace longctx
