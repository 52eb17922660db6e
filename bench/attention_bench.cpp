// Times the attention kernels, forward and forward+backward, and reports GFLOP/s over the scores
// the mask allows, against this machine's GEMM rate measured in the same process, plus the heap
// peak of one forward+backward beyond its inputs and outputs.
#include "bench/attention_bench.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "attention/attn_shape.h"
#include "attention/block_mask.h"
#include "attention/dense.h"
#include "attention/flash.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/memory.h"
#include "core/rng.h"

namespace longctx {

namespace {

const char* kUsage =
    "usage: longctx bench attention [OPTIONS]\n"
    "\n"
    "Times attention on random fp32 inputs: the forward alone and forward+backward, each the\n"
    "median of --repeats runs after one warm-up.\n"
    "  --pattern LIST     comma-separated patterns: dense, flash (default dense,flash)\n"
    "  --n LIST           comma-separated sequence lengths (default 1024,4096,16384)\n"
    "  --heads N          attention heads (default 8)\n"
    "  --head-dim N       head dimension (default 64)\n"
    "  --batch N          batch size (default 1)\n"
    "  --causal           causal mask (default: bidirectional)\n"
    "  --block-size N     flash tile / block-mask block (default 64)\n"
    "  --repeats N        timed runs per measurement (default 5)\n"
    "  --json             one JSON object per row on stdout, nothing else\n"
    "  --help             this text\n"
    "\n"
    "Columns: fwd_ms, fwd_bwd_ms (medians); gflops = 12 * head_dim * allowed scores * batch *\n"
    "heads / fwd_bwd time (4 * ... for fwd_gflops; flash's recomputation is not counted, nor\n"
    "are dense's computed-but-masked scores); gemm_gflops = this machine's fp32 GEMM rate\n"
    "(1024^3, same process); gemm_ratio = gflops / gemm_gflops; peak_mem_mb = heap peak of one\n"
    "forward+backward including the saved state (dense: probabilities, flash: logsumexp) and\n"
    "workspace, excluding q, k, v, out, dout, dq, dk, dv (n/a where heap tracking is off);\n"
    "blocks_computed = block-size tiles evaluated per head (dense: all of them);\n"
    "density = allowed scores / n^2.\n"
    "Dense rows whose probabilities would exceed 40% of physical memory are skipped.\n";

struct Options {
  std::vector<std::string> patterns{"dense", "flash"};
  std::vector<int64_t> ns{1024, 4096, 16384};
  int64_t heads = 8, head_dim = 64, batch = 1, block = 64, repeats = 5;
  bool causal = false, json = false;
};

// A wrong flag or value is a usage mistake: exit status 2, like the command line's own.
Error usage_error(const std::string& msg) { return Error(msg, 2); }

int64_t parse_int(const std::string& flag, const std::string& v, int64_t min) {
  size_t used = 0;
  int64_t x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || x < min)
    throw usage_error(str(flag, " expects an integer >= ", min, ", got '", v, "'"));
  return x;
}

std::vector<std::string> split_list(const std::string& flag, const std::string& v) {
  std::vector<std::string> items;
  size_t start = 0;
  while (true) {
    const size_t comma = v.find(',', start);
    items.push_back(
        v.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (items.back().empty())
      throw usage_error(str(flag, " expects a comma-separated list, got '", v, "'"));
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

// Returns false when --help was asked for (usage already printed).
bool parse_options(const std::vector<std::string>& args, Options* o) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i], value;
    bool inline_value = false;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      inline_value = true;
    }
    auto next = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= args.size()) throw usage_error(str(flag, " needs a value (see --help)"));
      return args[++i];
    };
    auto no_value = [&]() {
      if (inline_value) throw usage_error(str(flag, " takes no value, got '", value, "'"));
    };
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return false;
    } else if (flag == "--pattern") {
      o->patterns = split_list(flag, next());
      for (const auto& p : o->patterns)
        if (p != "dense" && p != "flash")
          throw usage_error(str("--pattern: unknown pattern '", p, "' (expected dense or flash)"));
    } else if (flag == "--n") {
      o->ns.clear();
      for (const auto& n : split_list(flag, next())) o->ns.push_back(parse_int(flag, n, 1));
    } else if (flag == "--heads") {
      o->heads = parse_int(flag, next(), 1);
    } else if (flag == "--head-dim") {
      o->head_dim = parse_int(flag, next(), 1);
    } else if (flag == "--batch") {
      o->batch = parse_int(flag, next(), 1);
    } else if (flag == "--block-size") {
      o->block = parse_int(flag, next(), 1);
    } else if (flag == "--repeats") {
      o->repeats = parse_int(flag, next(), 1);
    } else if (flag == "--causal") {
      no_value();
      o->causal = true;
    } else if (flag == "--json") {
      no_value();
      o->json = true;
    } else {
      throw usage_error(str("bench attention: unknown argument '", args[i], "' (see --help)"));
    }
  }
  return true;
}

struct Row {
  std::string pattern, skipped;
  int64_t n = 0, blocks = 0;
  double fwd_ms = 0, fwd_bwd_ms = 0, fwd_gflops = 0, gflops = 0, peak_mb = -1, density = 0;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
double median_ms(int64_t repeats, F&& f) {
  std::vector<double> ms;
  for (int64_t r = 0; r < repeats; ++r) {
    const double t0 = now_s();
    f();
    ms.push_back((now_s() - t0) * 1e3);
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

std::vector<float> random_tensor(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(n);
  for (auto& e : x) e = float(rng.normal());
  return x;
}

// `alloc_saved` creates the op's saved state after the baseline is taken, so the reported peak
// holds it, the workspace of forward and backward, and nothing the caller allocated up front.
template <class Alloc, class Fwd, class Bwd>
void measure(const Options& o, Row* row, Alloc&& alloc_saved, Fwd&& fwd, Bwd&& bwd) {
  const int64_t live_before = heap_live_bytes();
  alloc_saved();
  heap_reset_peak();
  fwd();
  bwd();
  if (heap_tracking_enabled()) row->peak_mb = double(heap_peak_bytes() - live_before) / (1 << 20);
  row->fwd_ms = median_ms(o.repeats, fwd);
  row->fwd_bwd_ms = median_ms(o.repeats, [&] {
    fwd();
    bwd();
  });
}

Row run_row(const Options& o, const std::string& pattern, int64_t n) {
  attn::AttnShape s;
  s.B = o.batch;
  s.H = s.Hkv = o.heads;
  s.Tq = s.Tk = n;
  s.D = o.head_dim;
  const int block = int(o.block);
  const attn::BlockMask mask =
      o.causal ? attn::causal_mask(n, block) : attn::full_mask(n, n, block);
  const double allowed = double(mask.allowed_scores());
  const double scores = allowed * s.B * s.H;
  Row row;
  row.pattern = pattern;
  row.n = n;
  row.density = allowed / (double(n) * double(n));
  row.blocks = pattern == "flash" ? mask.blocks_computed() : mask.n_qblocks() * mask.n_kblocks();

  const double probs_bytes = double(s.B * s.H) * n * n * sizeof(float);
  const double phys_bytes = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  if (pattern == "dense" && probs_bytes > 0.4 * phys_bytes) {
    row.skipped =
        str("dense probabilities need ", int64_t(probs_bytes / (1 << 20)), " MiB, over 40% of the ",
            int64_t(phys_bytes / (1 << 20)), " MiB of physical memory");
    return row;
  }

  const int64_t nq = s.B * s.H * n * s.D;
  const std::vector<float> q = random_tensor(nq, 1), k = random_tensor(nq, 2),
                           v = random_tensor(nq, 3), dout = random_tensor(nq, 4);
  std::vector<float> out(nq), dq(nq), dk(nq), dv(nq), saved;
  const float scale = 1.0f / std::sqrt(float(s.D));
  if (pattern == "flash") {
    measure(
        o, &row, [&] { saved.resize(s.B * s.H * n); },
        [&] {
          attn::flash_forward<float>(s, mask, q.data(), k.data(), v.data(), out.data(),
                                     saved.data(), scale);
        },
        [&] {
          attn::flash_backward<float>(s, mask, q.data(), k.data(), v.data(), out.data(),
                                      saved.data(), dout.data(), dq.data(), dk.data(), dv.data(),
                                      scale);
        });
  } else {
    measure(
        o, &row, [&] { saved.resize(s.B * s.H * n * n); },
        [&] {
          attn::dense_forward<float>(s, mask.rule, q.data(), k.data(), v.data(), out.data(),
                                     saved.data(), scale);
        },
        [&] {
          attn::dense_backward<float>(s, q.data(), k.data(), v.data(), saved.data(), dout.data(),
                                      dq.data(), dk.data(), dv.data(), scale);
        });
  }
  row.fwd_gflops = 4.0 * s.D * scores / (row.fwd_ms * 1e-3) * 1e-9;
  row.gflops = 12.0 * s.D * scores / (row.fwd_bwd_ms * 1e-3) * 1e-9;
  return row;
}

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

std::string json_row(const Options& o, const Row& r, double gemm_gflops) {
  std::string line =
      str("{\"pattern\":\"", r.pattern, "\",\"heads_scheme\":\"mha\",\"n\":", r.n,
          ",\"batch\":", o.batch, ",\"heads\":", o.heads, ",\"head_dim\":", o.head_dim,
          ",\"causal\":", o.causal ? "true" : "false", ",\"block_size\":", o.block);
  if (!r.skipped.empty()) return line + ",\"skipped\":\"" + r.skipped + "\"}";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                ",\"fwd_ms\":%.3f,\"fwd_bwd_ms\":%.3f,\"fwd_gflops\":%.3f,\"gflops\":%.3f,"
                "\"gemm_gflops\":%.3f,\"gemm_ratio\":%.4f,\"peak_mem_mb\":%s,"
                "\"blocks_computed\":%lld,\"density\":%.6f,\"threads\":%d}",
                r.fwd_ms, r.fwd_bwd_ms, r.fwd_gflops, r.gflops, gemm_gflops, r.gflops / gemm_gflops,
                r.peak_mb < 0 ? "null" : fixed(r.peak_mb, 2).c_str(),
                static_cast<long long>(r.blocks), r.density, omp_get_max_threads());
  return line + buf;
}

void print_table_header(const Options& o, double gemm_gflops) {
  std::printf(
      "attention: batch %lld, heads %lld, head_dim %lld, %s, block %lld, %d threads; "
      "fp32 GEMM rate %.1f GFLOP/s\n",
      static_cast<long long>(o.batch), static_cast<long long>(o.heads),
      static_cast<long long>(o.head_dim), o.causal ? "causal" : "bidirectional",
      static_cast<long long>(o.block), omp_get_max_threads(), gemm_gflops);
  std::printf("%-8s %7s %11s %11s %10s %9s %10s %12s %12s %8s\n", "pattern", "n", "fwd_ms",
              "fwd_bwd_ms", "fwd_gflops", "gflops", "gemm_ratio", "peak_mem_mb", "blocks",
              "density");
}

void print_table_row(const Row& r, double gemm_gflops) {
  if (!r.skipped.empty()) {
    std::printf("%-8s %7lld  skipped: %s\n", r.pattern.c_str(), static_cast<long long>(r.n),
                r.skipped.c_str());
    return;
  }
  const std::string peak = r.peak_mb < 0 ? "n/a" : fixed(r.peak_mb, 1);
  std::printf("%-8s %7lld %11.2f %11.2f %10.2f %9.2f %10.3f %12s %12lld %8.4f\n", r.pattern.c_str(),
              static_cast<long long>(r.n), r.fwd_ms, r.fwd_bwd_ms, r.fwd_gflops, r.gflops,
              r.gflops / gemm_gflops, peak.c_str(), static_cast<long long>(r.blocks), r.density);
}

}  // namespace

int bench_attention_main(const std::vector<std::string>& args) {
  Options o;
  if (!parse_options(args, &o)) return 0;
  const double gemm_gflops = measure_gemm_gflops();
  if (!o.json) print_table_header(o, gemm_gflops);
  for (const auto& pattern : o.patterns)
    for (int64_t n : o.ns) {
      const Row r = run_row(o, pattern, n);
      if (o.json)
        std::printf("%s\n", json_row(o, r, gemm_gflops).c_str());
      else
        print_table_row(r, gemm_gflops);
      std::fflush(stdout);
    }
  return 0;
}

}  // namespace longctx
