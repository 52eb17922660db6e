// Loader throughput: how fast ready batches come out of the prefetching loader when the
// consumer does nothing else (an upper bound on what it can feed), and the peak RSS while
// streaming, which must not grow with the dataset.
#include "bench/loader_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/cli_args.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/hash.h"
#include "core/memory.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/sample_source.h"

namespace longctx {
namespace {

const char* kUsage =
    "usage: longctx bench loader DATASET [--seq-len N] [--batch B] [--steps N | --epoch]\n"
    "                                    [--prefetch N] [--packing pack|doc] [--json]\n"
    "       longctx bench loader --make DIR --tokens N [--shard-tokens N] [--seed S]\n"
    "\n"
    "Pulls batches from the loader as fast as it serves them (nothing else runs) and reports\n"
    "tokens_per_s of ready batches, the time next() waited, and peak_rss_mb.\n"
    "  --seq-len N       tokens per sample (default 4096)\n"
    "  --batch B         samples per step (default 8)\n"
    "  --steps N         steps to time (default 200), or --epoch: one whole pass over the data\n"
    "  --prefetch N      steps read ahead (default 4)\n"
    "  --packing MODE    pack (windows across documents, default) or doc\n"
    "  --json            one JSON object on stdout, nothing else\n"
    "--make writes a dataset of N random byte-level tokens (documents of 1..8191 tokens) to DIR,\n"
    "for measuring the loader without a corpus; it refuses an existing DIR/manifest.json.\n";

// Random byte-tokenizer documents (BOS, ids, EOS) written shard by shard.
void make_dataset(const std::string& dir, int64_t tokens, int64_t shard_tokens, uint64_t seed) {
  make_dirs(dir);
  if (std::FILE* f = std::fopen((dir + "/" + kManifestName).c_str(), "r")) {
    std::fclose(f);
    throw ConfigError(str("'", dir, "/", kManifestName, "' exists; choose another --make DIR"));
  }
  Manifest m;
  m.attrs = {259, "byte", "byte-v1", 256, 257, 258};
  Rng rng(seed);
  std::vector<uint32_t> doc;
  int64_t left = tokens;
  for (int s = 0; left > 0; ++s) {
    char name[32];
    std::snprintf(name, sizeof name, "shard_%05d.h5", s);
    ShardWriter w(dir + "/" + name, m.attrs, false);
    while (left > 0 && w.tokens() < shard_tokens) {
      const int64_t n = std::min<int64_t>(left, 3 + int64_t(rng.below(8189)));
      doc.resize(size_t(n));
      doc[0] = 256;
      for (int64_t i = 1; i + 1 < n; ++i) doc[i] = uint32_t(rng.below(256));
      doc[n - 1] = 257;
      w.add_document(doc.data(), n);
      left -= n;
    }
    const int64_t t = w.tokens(), d = w.docs();
    w.finish();
    m.shards.push_back({name, t, d, hash_file(dir + "/" + name)});
    std::fprintf(stderr, "\r  wrote %s (%.0fM tokens left)   ", name, left / 1e6);
  }
  std::fprintf(stderr, "\n");
  write_manifest(dir, m);
  std::printf("made %s: %lld tokens in %zu shards\n", dir.c_str(), static_cast<long long>(tokens),
              m.shards.size());
}

}  // namespace

int bench_loader_main(const std::vector<std::string>& args) {
  std::string path, make;
  int64_t seq_len = 4096, batch = 8, steps = 200, prefetch = 4, tokens = 0;
  int64_t shard_tokens = int64_t(1) << 28, seed = 1;
  bool json = false, epoch = false;
  Packing packing = Packing::pack;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw ConfigError(str(a, " needs a value\n", kUsage));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--seq-len") seq_len = parse_int_option(a, value(), 1);
    else if (a == "--batch") batch = parse_int_option(a, value(), 1);
    else if (a == "--steps") steps = parse_int_option(a, value(), 1);
    else if (a == "--prefetch") prefetch = parse_int_option(a, value(), 1);
    else if (a == "--epoch") epoch = true;
    else if (a == "--json") json = true;
    else if (a == "--make") make = value();
    else if (a == "--tokens") tokens = parse_int_option(a, value(), 1, INT64_MAX);
    else if (a == "--shard-tokens") shard_tokens = parse_int_option(a, value(), 1, INT64_MAX);
    else if (a == "--seed") seed = parse_int_option(a, value(), 0, INT64_MAX);
    else if (a == "--packing") {
      const std::string& v = value();
      if (v != "pack" && v != "doc") throw ConfigError("--packing expects pack or doc, got '" + v + "'");
      packing = v == "pack" ? Packing::pack : Packing::doc;
    } else if (!a.empty() && a[0] == '-') throw ConfigError(str("unknown option '", a, "'\n", kUsage));
    else if (path.empty()) path = a;
    else throw ConfigError(str("unexpected argument '", a, "'\n", kUsage));
  }
  if (!make.empty()) {
    if (tokens <= 0) throw ConfigError(str("--make needs --tokens N (N > 0)\n", kUsage));
    make_dataset(make, tokens, shard_tokens, uint64_t(seed));
    return 0;
  }
  if (path.empty()) throw ConfigError(str("bench loader needs a DATASET\n", kUsage));

  Dataset ds(path);
  Config cfg;
  cfg.model.vocab_size = int(ds.attrs().vocab_size);
  cfg.data.source = DataSource::hdf5;
  cfg.data.train = path;
  cfg.data.seq_len = int(seq_len);
  cfg.data.packing = packing;
  const auto src = make_sample_source(cfg, &ds);
  if (epoch) steps = std::max<int64_t>(1, src->samples_per_epoch() / batch);
  const double rss_before = peak_rss_mb();
  Loader loader(*src, seq_len, batch, 1, {}, int(prefetch));
  const auto t0 = std::chrono::steady_clock::now();
  int64_t served = 0;
  for (int64_t s = 0; s < steps; ++s) {
    served += int64_t(loader.next()->inputs.size());
    if (!json && (s % 500 == 0 || s + 1 == steps))
      std::fprintf(stderr, "\r  step %lld/%lld", static_cast<long long>(s + 1),
                   static_cast<long long>(steps));
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!json) std::fprintf(stderr, "\n");
  const double wait_ms = loader.take_wait_ms();

  nlohmann::json j;
  j["dataset"] = path;
  j["dataset_tokens"] = ds.n_tokens();
  j["dataset_bytes"] = ds.n_tokens() * ds.shard(0).token_bytes();
  j["seq_len"] = seq_len;
  j["batch"] = batch;
  j["steps"] = steps;
  j["packing"] = name_of(packing);
  j["tokens"] = served;
  j["seconds"] = secs;
  j["tokens_per_s"] = served / secs;
  j["wait_ms_per_step"] = wait_ms / double(steps);
  j["peak_rss_mb"] = peak_rss_mb();
  j["rss_before_mb"] = rss_before;
  if (json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("bench loader %s: %lld tokens, seq %lld x batch %lld, %s\n", path.c_str(),
                static_cast<long long>(ds.n_tokens()), static_cast<long long>(seq_len),
                static_cast<long long>(batch), name_of(packing));
    std::printf("  %lld steps in %.2f s | %.1fM tokens/s of ready batches | wait %.3f ms/step | "
                "peak RSS %.0f MiB\n",
                static_cast<long long>(steps), secs, served / secs / 1e6,
                wait_ms / double(steps), peak_rss_mb());
  }
  return 0;
}

}  // namespace longctx
