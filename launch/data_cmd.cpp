// `longctx data inspect|verify`: a summary of a tokenized dataset, and its full check.
#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "data/dataset_check.h"
#include "data/tokenizer.h"
#include "launch/commands.h"

namespace longctx {

namespace {

const char* kDataHelp =
    "usage: longctx data inspect PATH [--json]\n"
    "       longctx data verify PATH\n"
    "\n"
    "PATH is a tokenized dataset: its directory (HDF5 shards, manifest.json and, for\n"
    "SentencePiece, tokenizer.model), or a glob of some of its shard files, quoted so that\n"
    "longctx expands it: 'data/wiki/shard_0000*.h5'.\n"
    "\n"
    "  inspect  shards with their token and document counts, totals, vocab size, tokenizer\n"
    "           (name and model hash), special ids, documents per label (labeled datasets),\n"
    "           mean and max document length, and the start of the first document, decoded\n"
    "           (non-printable characters escaped). Opening checks each shard's attributes and\n"
    "           counts against the manifest, not its contents (that is verify).\n"
    "    --json   the same as one JSON object on stdout, and nothing else\n"
    "  verify   full check: each shard's checksum, attributes and counts against the manifest,\n"
    "           every token id below vocab_size, document offsets (from 0, never decreasing,\n"
    "           ending at the token count), labels within the label names, and the tokenizer\n"
    "           model against its hash. Prints \"ok: N shards, T tokens, D documents verified\"\n"
    "           and exits 0, or prints every problem found on stderr and exits 1.\n"
    "  --help   this text\n"
    "\n"
    "Exit codes: 0 ok, 1 an unreadable or invalid dataset, 2 bad usage.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  throw ConfigError(str(msg, "\n", kDataHelp));
}

// 1234567 -> "1,234,567"
std::string grouped(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return v < 0 ? "-" + s : s;
}

// Length of the valid UTF-8 sequence of a non-ASCII character at s[i], or 0.
size_t utf8_length(const std::string& s, size_t i) {
  const unsigned char c = s[i];
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const unsigned char b = s[i + k];
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
  }
  return n;
}

// The first max_chars characters of text, with control characters, backslashes and bytes that
// are not UTF-8 escaped, so that any text prints on one line (and is valid JSON text).
std::string escaped(const std::string& text, size_t max_chars) {
  std::string out;
  size_t chars = 0, i = 0;
  for (; i < text.size() && chars < max_chars; ++chars) {
    const unsigned char c = text[i];
    if (c >= 0x80) {
      if (const size_t n = utf8_length(text, i)) {
        out.append(text, i, n);
        i += n;
        continue;
      }
    }
    ++i;
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\\') out += "\\\\";
    else if (c >= 0x20 && c < 0x7F) out += char(c);
    else out += str("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
  }
  if (i < text.size()) out += "...";
  return out;
}

struct Summary {
  int64_t max_doc = 0;
  std::vector<int64_t> label_counts;  // by label id; ids beyond the names counted at the end
  std::string sample;
};

constexpr size_t kSampleChars = 300;
constexpr int64_t kBlock = int64_t(1) << 20;

Summary summarize(const Dataset& ds) {
  Summary s;
  const Manifest& m = ds.manifest();
  s.label_counts.assign(m.labels.size() + 1, 0);
  for (int i = 0; i < ds.n_shards(); ++i) {
    const ShardReader& r = ds.shard(i);
    std::vector<uint64_t> off;
    for (int64_t at = 0; at < r.n_docs(); at += kBlock) {
      const int64_t k = std::min(kBlock, r.n_docs() - at);
      off.resize(size_t(k + 1));
      r.read_offsets(at, k + 1, off.data());
      for (int64_t d = 0; d < k; ++d) {
        if (off[size_t(d + 1)] < off[size_t(d)])  // a length would wrap around: say so instead
          throw Error(str("'", r.path(), "': doc_offsets[", at + d + 1, "] = ", off[size_t(d + 1)],
                          " is below doc_offsets[", at + d, "] = ", off[size_t(d)],
                          " (run `longctx data verify`)"));
        s.max_doc = std::max(s.max_doc, int64_t(off[size_t(d + 1)] - off[size_t(d)]));
      }
    }
    if (!m.has_labels) continue;
    std::vector<int32_t> labels;
    for (int64_t at = 0; at < r.n_docs(); at += kBlock) {
      const int64_t k = std::min(kBlock, r.n_docs() - at);
      labels.resize(size_t(k));
      r.read_labels(at, k, labels.data());
      for (int32_t l : labels)
        ++s.label_counts[l >= 0 && size_t(l) < m.labels.size() ? size_t(l) : m.labels.size()];
    }
  }
  if (ds.n_docs() > 0) {
    int64_t first = 0, last = 0;
    ds.doc_range(0, &first, &last);
    // Enough ids for kSampleChars characters even at one byte per id (4 per character).
    const int64_t n = std::min<int64_t>(last - first, 4 * kSampleChars + 2);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    ds.read_tokens(first, n, ids.data());
    const std::vector<uint32_t> u(ids.begin(), ids.end());
    s.sample = escaped(ds.tokenizer()->decode(u.data(), u.size()), kSampleChars);
  }
  return s;
}

int inspect(const std::string& path, bool json) {
  const Dataset ds(path);
  const Manifest& m = ds.manifest();
  const ShardAttrs& a = ds.attrs();
  const Summary s = summarize(ds);
  const double mean = ds.n_docs() > 0 ? double(ds.n_tokens()) / double(ds.n_docs()) : 0.0;
  const int64_t other_labels = m.has_labels ? s.label_counts.back() : 0;

  if (json) {
    nlohmann::ordered_json j;
    j["dir"] = ds.dir();
    j["shards"] = nlohmann::ordered_json::array();
    for (const ShardEntry& e : m.shards)
      j["shards"].push_back({{"name", e.name}, {"tokens", e.tokens}, {"docs", e.docs}});
    j["tokens"] = ds.n_tokens();
    j["docs"] = ds.n_docs();
    j["vocab_size"] = a.vocab_size;
    j["tokenizer"] = {{"name", a.tokenizer}, {"hash", a.tokenizer_hash}};
    j["bos_id"] = a.bos_id;
    j["eos_id"] = a.eos_id;
    j["pad_id"] = a.pad_id;
    if (m.has_labels) {
      j["labels"] = nlohmann::ordered_json::object();
      for (size_t l = 0; l < m.labels.size(); ++l) j["labels"][m.labels[l]] = s.label_counts[l];
      if (other_labels > 0) j["labels_out_of_range"] = other_labels;
    } else {
      j["labels"] = nullptr;
    }
    j["doc_length"] = {{"mean", mean}, {"max", s.max_doc}};
    j["sample"] = s.sample;
    // Names come from files: replace rather than throw on bytes that are not UTF-8.
    std::puts(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }

  size_t w = 4;
  for (const ShardEntry& e : m.shards) w = std::max(w, e.name.size());
  std::printf("dataset      %s\n", ds.dir().c_str());
  std::printf("shards       %d\n", ds.n_shards());
  for (const ShardEntry& e : m.shards)
    std::printf("  %-*s  %15s tokens  %12s docs\n", int(w), e.name.c_str(),
                grouped(e.tokens).c_str(), grouped(e.docs).c_str());
  std::printf("tokens       %s\n", grouped(ds.n_tokens()).c_str());
  std::printf("documents    %s (length: mean %.1f, max %s tokens)\n", grouped(ds.n_docs()).c_str(),
              mean, grouped(s.max_doc).c_str());
  std::printf("vocab size   %s\n", grouped(a.vocab_size).c_str());
  std::printf("tokenizer    %s (hash %s)\n", a.tokenizer.c_str(), a.tokenizer_hash.c_str());
  std::printf("special ids  bos %d, eos %d, pad %d\n", a.bos_id, a.eos_id, a.pad_id);
  if (m.has_labels) {
    std::string line;
    for (size_t l = 0; l < m.labels.size(); ++l)
      line += str(l ? ", " : "", m.labels[l], " ", grouped(s.label_counts[l]));
    if (other_labels > 0) line += str(", out of range ", grouped(other_labels));
    std::printf("labels       %s\n", line.c_str());
  }
  std::printf("sample       \"%s\"\n", s.sample.c_str());
  return 0;
}

int verify(const std::string& path) {
  const std::vector<std::string> problems = verify_dataset(path);
  if (!problems.empty()) {
    for (const std::string& p : problems) std::fprintf(stderr, "problem: %s\n", p.c_str());
    std::fprintf(stderr, "%zu problem%s found in '%s'\n", problems.size(),
                 problems.size() == 1 ? "" : "s", path.c_str());
    return 1;
  }
  std::string dir;
  const Manifest m = resolve_dataset(path, &dir);
  std::printf("ok: %zu shards, %lld tokens, %lld documents verified\n", m.shards.size(),
              static_cast<long long>(m.tokens()), static_cast<long long>(m.docs()));
  return 0;
}

}  // namespace

int data_main(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::fputs(kDataHelp, stderr);
    return 2;
  }
  const std::string& sub = args[0];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::fputs(kDataHelp, stdout);
    return 0;
  }
  if (sub != "inspect" && sub != "verify") usage_error(str("unknown data command '", sub, "'"));
  std::string path;
  bool json = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kDataHelp, stdout);
      return 0;
    } else if (a == "--json" && sub == "inspect") {
      json = true;
    } else if (!a.empty() && a[0] == '-') {
      usage_error(str("unknown option '", a, "' for data ", sub));
    } else if (path.empty()) {
      path = a;
    } else {
      usage_error(str("unexpected argument '", a, "' (data ", sub, " takes one PATH)"));
    }
  }
  if (path.empty()) usage_error(str("data ", sub, " needs a PATH"));
  return sub == "inspect" ? inspect(path, json) : verify(path);
}

}  // namespace longctx
