// `longctx tokenize`: command-line front end of tokenize_corpus (data/tokenize.h).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/cli_args.h"
#include "core/error.h"
#include "data/tokenize.h"
#include "launch/commands.h"

namespace longctx {
namespace {

const char* kTokenizeHelp =
    "usage: longctx tokenize INPUT... --out DIR [OPTIONS]\n"
    "\n"
    "Turns a text corpus into tokenized HDF5 shards. An INPUT is a text file (one document), a\n"
    "directory (its regular files, recursively, in sorted order; hidden files skipped) or a\n"
    ".jsonl file (one JSON object per line, with a string field \"text\"). Every document is\n"
    "stored as BOS, its ids, EOS; empty documents are skipped.\n"
    "\n"
    "Symbolic links are followed, to files and folders alike. A file or folder reached twice\n"
    "(through links, or named twice) is read once, where it comes first; a link back to an\n"
    "enclosing folder is not followed; what is neither a file nor a folder (FIFO, socket,\n"
    "device) is skipped. Each gets a warning naming it, and the summary counts them with the\n"
    "hidden entries. A broken link is an error, since its text would be missing.\n"
    "\n"
    "Writes DIR/train and, with --val-fraction, DIR/val: each a dataset of shard_00000.h5,\n"
    "shard_00001.h5, ..., tokenizer.model (SentencePiece only) and manifest.json, written last.\n"
    "\n"
    "options:\n"
    "  --out DIR              output directory (required)\n"
    "  --tokenizer NAME       byte: ids 0-255 are the bytes, BOS 256, EOS 257, PAD 258; lossless\n"
    "                         sentencepiece: needs --spm-model or --spm-train (either implies it)\n"
    "                         (default: byte)\n"
    "  --spm-model FILE       encode with this SentencePiece model\n"
    "  --spm-train VOCAB      train a SentencePiece model of VOCAB pieces on the train documents\n"
    "                         (byte fallback, no normalization: lossless for UTF-8 text;\n"
    "                         unk 0, BOS 1, EOS 2, PAD 3)\n"
    "  --spm-type TYPE        bpe or unigram, for --spm-train (default: bpe)\n"
    "  --spm-max-sentences N  lines sampled for training (default: 2000000)\n"
    "  --invalid-utf8 MODE    SentencePiece stores each byte of invalid UTF-8 as U+FFFD. For a\n"
    "                         document holding some: warn (store it so; a warning names the\n"
    "                         file and counts the bytes, and a total comes at the end), error\n"
    "                         (stop, naming the file and the byte) or skip (leave it out, with\n"
    "                         the same warnings) (default: warn). Not for the byte tokenizer,\n"
    "                         which keeps any bytes\n"
    "  --shard-tokens N       start a new shard once one holds N tokens (default: 67108864)\n"
    "  --val-fraction F       put each document in DIR/val with probability F, drawn from the\n"
    "                         seed and the document's index: the same inputs give the same split\n"
    "                         (default: 0, no val split)\n"
    "  --label-field NAME     JSONL key of each document's class label (every input must be\n"
    "                         JSONL): strings, numbered in sorted order, or integers >= 0\n"
    "  --seed S               seed of the val split and the training sample (default: 1234)\n"
    "  --force                replace the dataset already in DIR\n"
    "  --quiet                no progress lines on stderr\n"
    "  -h, --help             this help\n"
    "\n"
    "Encoding runs on OMP_NUM_THREADS threads. Prints a summary on stdout. Exit codes: 0 ok,\n"
    "1 bad input or I/O error, 2 usage error.\n";

double parse_fraction(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(x >= 0 && x < 1))
    throw ConfigError(str(flag, " expects a number in [0, 1), got '", v, "'"));
  return x;
}

// "1 file", "2 files".
std::string count(int64_t n, const char* one, const char* many) {
  return str(n, " ", n == 1 ? one : many);
}

// "2 hidden entries, 1 link back to an enclosing folder": the kinds of skip that happened.
std::string skip_counts(const CorpusSkips& k) {
  std::string out;
  const auto add = [&](int64_t n, const char* one, const char* many) {
    if (n > 0) out += (out.empty() ? "" : ", ") + count(n, one, many);
  };
  add(k.hidden, "hidden entry", "hidden entries");
  add(k.cycles, "link back to an enclosing folder", "links back to an enclosing folder");
  add(k.repeats, "file or folder reached a second time", "files or folders reached a second time");
  add(k.special, "entry neither a file nor a folder", "entries neither a file nor a folder");
  return out;
}

std::string millions(int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  return buf;
}

}  // namespace

int tokenize_main(const std::vector<std::string>& args) {
  TokenizeOptions o;
  o.tokenizer.clear();  // chosen below unless given
  o.progress = true;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], value;
    const bool has_inline = a.rfind("--", 0) == 0 && a.find('=') != std::string::npos;
    if (has_inline) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
    }
    // The value of an option: after '=' or the next argument.
    auto next = [&]() -> std::string {
      if (has_inline) return value;
      if (i + 1 >= args.size()) throw ConfigError(str(a, " needs a value\n", kTokenizeHelp));
      return args[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kTokenizeHelp, stdout);
      return 0;
    } else if (a == "--out") {
      o.out_dir = next();
    } else if (a == "--tokenizer") {
      o.tokenizer = next();
    } else if (a == "--spm-model") {
      o.spm_model = next();
    } else if (a == "--spm-train") {
      o.spm_train_vocab = int(parse_int_option(a, next(), 5));
    } else if (a == "--spm-type") {
      o.spm_type = next();
    } else if (a == "--spm-max-sentences") {
      o.spm_max_sentences = parse_int_option(a, next(), 1, INT64_MAX);
    } else if (a == "--invalid-utf8") {
      o.invalid_utf8 = next();
    } else if (a == "--shard-tokens") {
      o.shard_tokens = parse_int_option(a, next(), 1, INT64_MAX);
    } else if (a == "--val-fraction") {
      o.val_fraction = parse_fraction(a, next());
    } else if (a == "--label-field") {
      o.label_field = next();
      if (o.label_field.empty()) throw ConfigError("--label-field needs a non-empty NAME");
    } else if (a == "--seed") {
      o.seed = uint64_t(parse_int_option(a, next(), 0, INT64_MAX));
    } else if (a == "--force" && !has_inline) {
      o.force = true;
    } else if (a == "--quiet" && !has_inline) {
      o.progress = false;
    } else if (!a.empty() && a[0] == '-') {
      throw ConfigError(str("unknown option '", args[i], "' for tokenize\n", kTokenizeHelp));
    } else {
      o.inputs.push_back(a);
    }
  }
  if (o.tokenizer.empty())
    o.tokenizer = o.spm_model.empty() && o.spm_train_vocab == 0 ? "byte" : "sentencepiece";
  if (o.out_dir.empty()) throw ConfigError(str("tokenize needs --out DIR\n", kTokenizeHelp));
  if (o.inputs.empty()) throw ConfigError(str("tokenize needs an INPUT\n", kTokenizeHelp));

  const TokenizeSummary s = tokenize_corpus(o);
  const int64_t docs = s.train.docs + s.val.docs;
  const std::string utf8_skipped =
      o.invalid_utf8 == "skip" && s.bad_utf8_docs > 0
          ? str(", ", s.bad_utf8_docs, " with invalid UTF-8")
          : "";
  std::printf("tokenized %lld documents (%lld empty%s skipped), %.1f MB in %.1f s (%.1f MB/s)\n",
              static_cast<long long>(docs), static_cast<long long>(s.empty_docs),
              utf8_skipped.c_str(), s.bytes / 1e6, s.seconds,
              s.seconds > 0 ? s.bytes / 1e6 / s.seconds : 0.0);
  if (s.skipped.total() > 0)
    std::printf("skipped in the inputs: %s\n", skip_counts(s.skipped).c_str());
  std::printf("tokenizer: %s, vocab %d\n", o.tokenizer.c_str(), s.vocab_size);
  const std::pair<const char*, const SplitSummary*> splits[] = {{"train", &s.train},
                                                                {"val", &s.val}};
  for (const auto& [name, sp] : splits) {
    if (sp->docs == 0) continue;
    std::printf("%-5s: %lld documents, %s tokens, %d shards -> %s\n", name,
                static_cast<long long>(sp->docs), millions(sp->tokens).c_str(), sp->shards,
                (std::filesystem::path(o.out_dir) / name).string().c_str());
  }
  if (!s.labels.empty()) {
    std::string names;
    for (size_t i = 0; i < s.labels.size() && i < 20; ++i) names += (i ? ", " : "") + s.labels[i];
    if (s.labels.size() > 20) names += ", ...";
    std::printf("labels (%zu): %s\n", s.labels.size(), names.c_str());
  }
  if (s.bad_utf8_docs > 0) {
    std::fflush(stdout);
    std::fprintf(stderr, "warning: %s held invalid UTF-8 (%lld bytes in all): %s\n",
                 count(s.bad_utf8_docs, "document", "documents").c_str(),
                 static_cast<long long>(s.bad_utf8_bytes),
                 o.invalid_utf8 == "skip"
                     ? "left out (--invalid-utf8 skip)"
                     : "each such byte is stored as U+FFFD (--invalid-utf8 error refuses such "
                       "documents, --invalid-utf8 skip leaves them out)");
  }
  return 0;
}

}  // namespace longctx
