#include "data/tokenize.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/rng.h"
#include "data/corpus.h"
#include "data/dataset.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kValSplitStream = 0x76616c;  // keys the split draws apart from other streams
// Documents are encoded in parallel, a batch at a time: this bounds the text and ids in memory.
constexpr size_t kBatchDocs = 1024;
constexpr int64_t kBatchBytes = int64_t(4) << 20;

bool in_val(uint64_t seed, double fraction, int64_t doc) {
  return fraction > 0 && Rng::stream(seed, kValSplitStream, doc).uniform() < fraction;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void validate(const TokenizeOptions& o) {
  if (o.inputs.empty()) throw ConfigError("tokenize needs at least one INPUT (file, directory or .jsonl)");
  if (o.out_dir.empty()) throw ConfigError("tokenize needs --out DIR");
  if (o.tokenizer == "byte") {
    if (!o.spm_model.empty() || o.spm_train_vocab > 0)
      throw ConfigError("--spm-model and --spm-train need --tokenizer sentencepiece");
  } else if (o.tokenizer == "sentencepiece") {
    if (o.spm_model.empty() == (o.spm_train_vocab <= 0))
      throw ConfigError(
          "--tokenizer sentencepiece needs exactly one of --spm-model FILE and --spm-train VOCAB");
  } else {
    throw ConfigError(str("unknown tokenizer '", o.tokenizer, "' (expected byte or sentencepiece)"));
  }
  if (o.spm_type != "bpe" && o.spm_type != "unigram")
    throw ConfigError(str("unknown --spm-type '", o.spm_type, "' (expected bpe or unigram)"));
  if (o.spm_max_sentences < 1)
    throw ConfigError(str("SentencePiece max sentences ", o.spm_max_sentences, " must be >= 1"));
  if (o.shard_tokens < 1)
    throw ConfigError(str("--shard-tokens ", o.shard_tokens, " must be >= 1"));
  if (!(o.val_fraction >= 0 && o.val_fraction < 1))
    throw ConfigError(str("--val-fraction ", o.val_fraction, " is outside [0, 1)"));
  if (!o.invalid_utf8.empty() && o.tokenizer != "sentencepiece")
    throw ConfigError("--invalid-utf8 applies to SentencePiece only (the byte tokenizer keeps any "
                      "bytes as they are)");
  if (!o.invalid_utf8.empty() && o.invalid_utf8 != "warn" && o.invalid_utf8 != "error" &&
      o.invalid_utf8 != "skip")
    throw ConfigError(str("unknown --invalid-utf8 '", o.invalid_utf8,
                          "' (expected warn, error or skip)"));
}

void warn(const TokenizeOptions& o, const std::string& message) {
  if (o.warn) {
    o.warn(message);
  } else {
    std::fprintf(stderr, "warning: %s\n", message.c_str());
    std::fflush(stderr);
  }
}

std::string split_dir(const TokenizeOptions& o, const char* split) {
  return (fs::path(o.out_dir) / split).string();
}

// Refuses to replace a dataset unless forced.
void check_outputs(const TokenizeOptions& o) {
  for (const char* split : {"train", "val"}) {
    const std::string manifest = (fs::path(split_dir(o, split)) / kManifestName).string();
    if (!o.force && fs::exists(manifest))
      throw Error(str("'", manifest, "' already exists (use --force to replace the dataset)"));
  }
}

// Removes the files of an earlier dataset (or of a failed run) from `dir`, the manifest first so
// that no manifest ever names a missing shard; other files are left alone.
void clear_dataset_dir(const std::string& dir) {
  static const std::regex ours(
      R"((manifest\.json|tokenizer\.model|shard_[0-9]{5,}\.h5)(\.tmp\.[0-9]+)?)");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  const fs::path manifest = fs::path(dir) / kManifestName;
  if (fs::exists(manifest) && !fs::remove(manifest, ec))
    throw Error(str("cannot remove '", manifest.string(), "': ", ec.message()));
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!std::regex_match(e.path().filename().string(), ours)) continue;
    if (!fs::remove(e.path(), ec))
      throw Error(str("cannot remove '", e.path().string(), "': ", ec.message()));
  }
}

// Progress lines on stderr, a few a second at most: rewritten in place on a terminal, one line
// every few seconds otherwise.
class Progress {
 public:
  Progress(bool on, const char* phase, int64_t total_bytes)
      : on_(on), tty_(on && ::isatty(2)), phase_(phase), total_(total_bytes),
        t0_(Clock::now()), last_(t0_) {}
  ~Progress() { end_line(); }
  // Ends the line being rewritten, so that a message can follow on a line of its own.
  void end_line() {
    if (printed_ && tty_) std::fputc('\n', stderr);
    printed_ = false;
  }
  void update(int64_t bytes, int64_t docs, int64_t tokens) {
    if (!on_ || seconds_since(last_) < (tty_ ? 0.25 : 2.0)) return;
    last_ = Clock::now();
    const double mb = bytes / 1e6, s = seconds_since(t0_);
    std::fprintf(stderr, "%s%s: %.1f/%.1f MB (%.0f%%)  %.1f MB/s  %lld docs", tty_ ? "\r" : "",
                 phase_, mb, total_ / 1e6, total_ > 0 ? 100.0 * bytes / total_ : 100.0,
                 s > 0 ? mb / s : 0.0, static_cast<long long>(docs));
    if (tokens > 0) std::fprintf(stderr, "  %.2fM tokens", tokens / 1e6);
    std::fputs(tty_ ? "   " : "\n", stderr);
    std::fflush(stderr);
    printed_ = true;
  }

 private:
  bool on_, tty_, printed_ = false;
  const char* phase_;
  int64_t total_;
  Clock::time_point t0_, last_;
};

// One output dataset (OUT/train or OUT/val). Shards are cut once they reach shard_tokens; the
// manifest comes last. Unless keep() is reached, the destructor removes what it wrote.
class SplitWriter {
 public:
  SplitWriter(std::string dir, const ShardAttrs& attrs, bool labels, int64_t shard_tokens)
      : dir_(std::move(dir)), attrs_(attrs), labels_(labels), shard_tokens_(shard_tokens) {
    make_dirs(dir_);
  }
  ~SplitWriter() {
    shard_.reset();  // removes its temporary file
    std::error_code ec;
    for (auto it = written_.rbegin(); it != written_.rend(); ++it) fs::remove(*it, ec);
  }

  void add(const std::vector<uint32_t>& ids, int32_t label) {
    if (!shard_) {
      char name[32];
      std::snprintf(name, sizeof name, "shard_%05zu.h5", entries_.size());
      shard_name_ = name;
      shard_ = std::make_unique<ShardWriter>(path(shard_name_), attrs_, labels_);
    }
    shard_->add_document(ids.data(), int64_t(ids.size()), label);
    tokens_ += int64_t(ids.size());
    ++docs_;
    if (shard_->tokens() >= shard_tokens_) finish_shard();
  }

  // The last shard, then the model beside the shards (if any), then the manifest.
  void finish(Manifest m, const std::string& model_bytes) {
    if (shard_) finish_shard();
    if (!m.tokenizer_model.empty()) {
      written_.push_back(path(m.tokenizer_model));
      write_file_atomic(written_.back(), model_bytes);
    }
    m.shards = entries_;
    written_.push_back(path(kManifestName));
    write_manifest(dir_, m);
  }
  void keep() { written_.clear(); }

  SplitSummary summary() const { return {docs_, tokens_, int(entries_.size())}; }

 private:
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  void finish_shard() {
    shard_->finish();
    written_.push_back(path(shard_name_));
    entries_.push_back({shard_name_, shard_->tokens(), shard_->docs(), hash_file(written_.back())});
    shard_.reset();
  }

  std::string dir_;
  ShardAttrs attrs_;
  bool labels_;
  int64_t shard_tokens_, docs_ = 0, tokens_ = 0;
  std::unique_ptr<ShardWriter> shard_;
  std::string shard_name_;
  std::vector<ShardEntry> entries_;
  std::vector<std::string> written_;  // files to remove on failure, in the order written
};

// BOS, ids, EOS of docs[0, n) into ids[0, n), in parallel.
void encode_batch(const Tokenizer& tok, const std::vector<CorpusDoc>& docs,
                  std::vector<std::vector<uint32_t>>* ids, size_t n) {
  std::string error;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < int64_t(n); ++i) {
    try {
      std::vector<uint32_t>& v = (*ids)[i];
      v.clear();
      v.push_back(uint32_t(tok.bos_id()));
      tok.encode(docs[i].text, &v);
      v.push_back(uint32_t(tok.eos_id()));
    } catch (const std::exception& e) {
#pragma omp critical(tokenize_encode_error)
      if (error.empty()) error = str(docs[i].where, ": ", e.what());
    }
  }
  if (!error.empty()) throw Error(error);
}

// --invalid-utf8: SentencePiece stores each byte of invalid UTF-8 as U+FFFD, so a document
// holding some is stored (with a warning), refused, or left out. The byte tokenizer keeps any
// bytes: it keeps every document.
class Utf8Policy {
 public:
  explicit Utf8Policy(const TokenizeOptions& o)
      : o_(o), check_(o.tokenizer == "sentencepiece"),
        mode_(o.invalid_utf8.empty() ? "warn" : o.invalid_utf8) {}

  // Whether to keep `doc`; Error if it holds invalid UTF-8 and the mode is error. A document
  // holding some is counted and, with `report`, told through `o.warn`.
  bool keep(const CorpusDoc& doc, bool report, Progress* progress) {
    if (!check_) return true;
    size_t first;
    const int64_t bad = invalid_utf8_bytes(doc.text, &first);
    if (bad == 0) return true;
    if (mode_ == "error")
      throw Error(str(doc.where, ": invalid UTF-8 at byte ", first, " (", bad, " invalid bytes in ",
                      "the document), which SentencePiece would store as U+FFFD; convert the ",
                      "input to UTF-8 (e.g. iconv -f latin1 -t utf-8), or pass --invalid-utf8 ",
                      "warn to accept U+FFFD or --invalid-utf8 skip to leave such documents out"));
    ++docs;
    bytes += bad;
    if (!report) return mode_ == "warn";
    progress->end_line();
    warn(o_, str(doc.where, ": ", bad, bad == 1 ? " byte" : " bytes",
                 " of invalid UTF-8 (the first at byte ", first, "); ",
                 mode_ == "warn" ? "SentencePiece stores each as U+FFFD, so the document will not "
                                   "decode to its input"
                                 : "document skipped (--invalid-utf8 skip)"));
    return mode_ == "warn";
  }
  int64_t skipped() const { return mode_ == "skip" ? docs : 0; }

  int64_t docs = 0, bytes = 0;  // documents holding invalid UTF-8, and their invalid bytes

 private:
  const TokenizeOptions& o_;
  bool check_;
  std::string mode_;
};

[[noreturn]] void empty_corpus(const TokenizeOptions& o, size_t n_files, int64_t empty,
                               int64_t bad_utf8_skipped) {
  std::string inputs;
  for (const auto& in : o.inputs) inputs += (inputs.empty() ? "'" : ", '") + in + "'";
  throw Error(str("empty corpus: no non-empty document in ", inputs, " (", n_files, " files, ",
                  empty, " empty documents",
                  bad_utf8_skipped > 0 ? str(", ", bad_utf8_skipped,
                                             " skipped for invalid UTF-8")
                                       : std::string(),
                  ")"));
}

// What a first pass over the corpus learns: the label names and the SentencePiece model.
struct Scan {
  std::vector<std::string> label_names;
  std::map<std::string, int32_t> label_ids;  // string labels
  LabelKind kind = LabelKind::kNone;
};

Scan scan_corpus(const TokenizeOptions& o, const std::vector<std::string>& files,
                 int64_t total_bytes, std::unique_ptr<Tokenizer>* tok) {
  Scan scan;
  CorpusReader reader(files, o.label_field);
  const bool train = o.spm_train_vocab > 0;
  TrainingLines lines(o.spm_max_sentences, o.seed);
  std::set<std::string> names;
  int64_t max_id = -1, docs = 0;
  CorpusDoc doc;
  // Refuses invalid UTF-8 before a model is trained on it, and leaves out what the second pass
  // will leave out, so that both passes count the same documents; the second pass reports.
  Utf8Policy utf8(o);
  {
    Progress progress(o.progress, "scan", total_bytes);
    while (reader.next(&doc)) {
      if (!utf8.keep(doc, false, &progress)) continue;
      if (train && !in_val(o.seed, o.val_fraction, docs)) lines.add_document(doc.text);
      if (reader.label_kind() == LabelKind::kString) names.insert(doc.label_name);
      max_id = std::max(max_id, doc.label_id);
      progress.update(reader.bytes_read(), ++docs, 0);
    }
  }
  if (docs == 0) empty_corpus(o, files.size(), reader.empty_docs(), utf8.skipped());
  scan.kind = reader.label_kind();
  if (scan.kind == LabelKind::kString) {
    scan.label_names.assign(names.begin(), names.end());
    for (size_t i = 0; i < scan.label_names.size(); ++i)
      scan.label_ids[scan.label_names[i]] = int32_t(i);
  } else if (scan.kind == LabelKind::kInt) {
    for (int64_t i = 0; i <= max_id; ++i) scan.label_names.push_back(std::to_string(i));
  }
  if (train) {
    if (o.progress) std::fprintf(stderr, "training SentencePiece (%s, vocab %d) on %zu lines\n",
                                 o.spm_type.c_str(), o.spm_train_vocab, lines.lines().size());
    SentencePieceTraining t;
    t.vocab_size = o.spm_train_vocab;
    t.model_type = o.spm_type;
    *tok = train_sentencepiece(lines, t);
  }
  return scan;
}

int32_t label_of(const Scan& scan, const CorpusDoc& doc) {
  if (scan.kind == LabelKind::kInt) {
    if (doc.label_id >= int64_t(scan.label_names.size()))
      throw Error(str(doc.where, ": label ", doc.label_id, " was not there when the corpus was "
                      "first read (did the input change?)"));
    return int32_t(doc.label_id);
  }
  const auto it = scan.label_ids.find(doc.label_name);
  if (it == scan.label_ids.end())
    throw Error(str(doc.where, ": label \"", doc.label_name, "\" was not there when the corpus "
                    "was first read (did the input change?)"));
  return it->second;
}

}  // namespace

TokenizeSummary tokenize_corpus(const TokenizeOptions& o) {
  validate(o);
  const Clock::time_point t0 = Clock::now();
  const CorpusListing listing = list_corpus(o.inputs);
  for (const std::string& w : listing.warnings) warn(o, w);
  const std::vector<std::string>& files = listing.files;
  int64_t total_bytes = 0;
  for (const auto& f : files) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    if (!ec) total_bytes += int64_t(size);
  }
  check_outputs(o);

  std::unique_ptr<Tokenizer> tok;
  if (o.tokenizer == "byte") tok = make_byte_tokenizer();
  if (!o.spm_model.empty()) tok = load_sentencepiece(o.spm_model);
  // Labels must be known in full before the first shard is written, and a model trained first.
  Scan scan;
  if (!o.label_field.empty() || o.spm_train_vocab > 0) scan = scan_corpus(o, files, total_bytes, &tok);

  ShardAttrs attrs;
  attrs.vocab_size = tok->vocab_size();
  attrs.tokenizer = tok->name();
  attrs.tokenizer_hash = tok->model_hash();
  attrs.bos_id = tok->bos_id();
  attrs.eos_id = tok->eos_id();
  attrs.pad_id = tok->pad_id();
  const bool labeled = !o.label_field.empty();

  const std::string train_dir = split_dir(o, "train"), val_dir = split_dir(o, "val");
  clear_dataset_dir(train_dir);
  clear_dataset_dir(val_dir);
  SplitWriter train(train_dir, attrs, labeled, o.shard_tokens);
  std::unique_ptr<SplitWriter> val;
  if (o.val_fraction > 0)
    val = std::make_unique<SplitWriter>(val_dir, attrs, labeled, o.shard_tokens);

  CorpusReader reader(files, o.label_field);
  Utf8Policy utf8(o);
  std::vector<CorpusDoc> docs(kBatchDocs);
  std::vector<std::vector<uint32_t>> ids(kBatchDocs);
  int64_t n_docs = 0, n_tokens = 0;
  {
    Progress progress(o.progress, "tokenize", total_bytes);
    for (bool more = true; more;) {
      size_t n = 0;
      int64_t bytes = 0;
      while (n < kBatchDocs && bytes < kBatchBytes && (more = reader.next(&docs[n]))) {
        if (!utf8.keep(docs[n], true, &progress)) continue;
        bytes += int64_t(docs[n++].text.size());
      }
      encode_batch(*tok, docs, &ids, n);
      for (size_t i = 0; i < n; ++i, ++n_docs) {
        const int32_t label = labeled ? label_of(scan, docs[i]) : -1;
        (in_val(o.seed, o.val_fraction, n_docs) ? *val : train).add(ids[i], label);
        n_tokens += int64_t(ids[i].size());
      }
      progress.update(reader.bytes_read(), n_docs, n_tokens);
    }
  }
  if (n_docs == 0) empty_corpus(o, files.size(), reader.empty_docs(), utf8.skipped());
  if (train.summary().docs == 0 || (val && val->summary().docs == 0))
    throw Error(str("--val-fraction ", o.val_fraction, " leaves ",
                    train.summary().docs == 0 ? "the train" : "the validation",
                    " split without documents (", n_docs, " documents in all)"));

  Manifest m;
  m.attrs = attrs;
  m.tokenizer_model = tok->name() == "sentencepiece" ? kTokenizerModelName : "";
  m.labels = scan.label_names;
  m.has_labels = labeled;
  // The train manifest last: its presence says the whole run succeeded.
  if (val) val->finish(m, tok->model_bytes());
  train.finish(m, tok->model_bytes());
  if (val) val->keep();
  train.keep();

  TokenizeSummary s;
  s.train = train.summary();
  if (val) s.val = val->summary();
  s.empty_docs = reader.empty_docs();
  s.skipped = listing.skipped;
  s.bad_utf8_docs = utf8.docs;
  s.bad_utf8_bytes = utf8.bytes;
  s.bytes = reader.bytes_read();
  s.seconds = seconds_since(t0);
  s.vocab_size = tok->vocab_size();
  s.labels = scan.label_names;
  return s;
}

}  // namespace longctx
