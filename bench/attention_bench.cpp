// Times the attention kernels, forward and forward+backward, and reports GFLOP/s over the scores
// the mask allows, against this machine's GEMM rate measured in the same process, plus the heap
// peak of one forward+backward beyond its inputs and outputs.
#include "bench/attention_bench.h"

#if LONGCTX_HAVE_CUDA_KERNELS
#include "bench/attention_bench_cuda.h"
#endif

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "attention/attn_shape.h"
#include "attention/bigbird.h"
#include "attention/block_mask.h"
#include "attention/dense.h"
#include "attention/flash.h"
#include "attention/linformer.h"
#include "attention/longformer.h"
#include "attention/mask_plan.h"
#include "attention/strided.h"
#include "core/cli_args.h"
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
    "  --pattern LIST       comma-separated patterns: dense, flash, longformer, bigbird, strided,\n"
    "                       linformer (default dense,flash)\n"
    "  --n LIST             comma-separated sequence lengths (default 1024,4096,16384)\n"
    "  --heads N            attention heads (default 8)\n"
    "  --head-dim N         head dimension (default 64)\n"
    "  --batch N            batch size (default 1)\n"
    "  --causal             causal mask (default: bidirectional)\n"
    "  --block-size N       tile / block-mask block, and BigBird's block (default 64)\n"
    "  --window N           longformer: one-sided window (default 256)\n"
    "  --dilation N         longformer: dilation of every head (default 1)\n"
    "  --global-tokens LIST longformer: global positions, or 'none' (default 0)\n"
    "  --window-blocks N    bigbird: neighbour blocks per side (default 1)\n"
    "  --global-blocks N    bigbird: global blocks at each end (default 1)\n"
    "  --random-blocks N    bigbird: random key blocks per query block (default 3)\n"
    "  --stride N|auto      strided: stride (default auto = round(sqrt(n)))\n"
    "  --k N                linformer: projected length of keys and values (default 256)\n"
    "  --heads-scheme S     mha, gqa, mqa or mla (default mha). gqa/mqa share each K/V head\n"
    "                       across a group of query heads; mla runs the expanded form, whose\n"
    "                       kernel cost is mha's (its saving is the cache: kv_values_per_token)\n"
    "  --n-kv-head N        gqa: K/V heads, dividing --heads (default heads / 4)\n"
    "  --kv-rank N          mla: latent size per token (default 64)\n"
    "  --rope-dim N         mla: decoupled RoPE key size (default 16)\n"
    "  --repeats N          timed runs per measurement (default 5)\n"
    "  --device cpu|cuda    where to run (default cpu). cuda times the GPU kernels (mha, gqa,\n"
    "                       mqa) with CUDA events: dense through cuBLASLt, flash on CUDA cores\n"
    "                       and, in bf16, on tensor cores (flash_tc), which also runs longformer,\n"
    "                       bigbird and strided (--block-size 64); TFLOP/s count fwd+bwd as 3.5x\n"
    "                       fwd, and each row has its relative error against float64\n"
    "  --dtype bf16|fp32    element type on the GPU (default bf16; the CPU runs fp32)\n"
    "  --sweep              cuda: every pattern and n at head_dim 64 and 128, bidirectional and\n"
    "                       causal, batch x heads = 65536 / n (overrides --batch, --heads,\n"
    "                       --head-dim, --causal)\n"
    "  --time-budget S      cuda: cases that would start after S seconds are reported skipped\n"
    "  --json               one JSON object per row on stdout, nothing else\n"
    "  --jsonl FILE         also write one JSON object per row to FILE\n"
    "  --help               this text\n"
    "\n"
    "Columns: fwd_ms, fwd_bwd_ms (medians); gflops = 12 * head_dim * allowed scores * batch *\n"
    "heads / fwd_bwd time (4 * ... for fwd_gflops; flash's recomputation is not counted, nor\n"
    "are dense's computed-but-masked scores); tile_gflops = the same over every score of the\n"
    "blocks the kernel evaluates, masked or not (dense: n^2); gemm_gflops = this machine's fp32\n"
    "GEMM rate (best of seven 1024^3 runs, same process); gemm_ratio = gflops / gemm_gflops; "
    "peak_mem_mb = heap\n"
    "peak of one forward+backward including the saved state (dense: probabilities, others:\n"
    "logsumexp) and workspace, excluding q, k, v, out, dout, dq, dk, dv and the masks (n/a where\n"
    "heap tracking is off); mask_ms, mask_mb = time to build the masks and their size;\n"
    "blocks_computed = block-size tiles evaluated per head (mean over heads; dense: all);\n"
    "density = allowed scores / n^2 (mean over heads).\n"
    "Dense rows whose probabilities would exceed 40% of physical memory are skipped.\n";

const std::vector<std::string> kPatterns{"dense",   "flash",   "longformer",
                                         "bigbird", "strided", "linformer"};

struct Options {
  std::vector<std::string> patterns{"dense", "flash"};
  std::vector<int64_t> ns{1024, 4096, 16384};
  int64_t heads = 8, head_dim = 64, batch = 1, block = 64, repeats = 5;
  int64_t window = 256, dilation = 1, window_blocks = 1, global_blocks = 1, random_blocks = 3;
  int64_t stride = 0;  // 0: stride_auto(n)
  int64_t k = 256;     // linformer
  std::string heads_scheme = "mha";
  int64_t n_kv_head = 0, kv_rank = 64, rope_dim = 16;  // n_kv_head 0: heads / 4 for gqa

  int64_t kv_heads() const {
    if (heads_scheme == "mqa") return 1;
    if (heads_scheme == "gqa") return n_kv_head > 0 ? n_kv_head : std::max<int64_t>(1, heads / 4);
    return heads;
  }
  // What an inference cache keeps per token per layer.
  int64_t kv_values_per_token() const {
    return heads_scheme == "mla" ? kv_rank + rope_dim : 2 * kv_heads() * head_dim;
  }
  std::vector<int64_t> global_tokens{0};
  bool causal = false, json = false, sweep = false;
  std::string device = "cpu", dtype = "bf16";  // dtype: the GPU's (the CPU runs fp32)
  std::string jsonl;                           // also write the JSON lines here
  int64_t time_budget_s = 0;                   // cuda: 0 = none
};

// A wrong flag or value is a usage mistake: exit status 2, like the command line's own.
Error usage_error(const std::string& msg) { return Error(msg, 2); }

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

// Returns false when --help was asked for (usage already printed). A new flag is one entry in
// `valued` (takes a value) or `switches` (takes none).
bool parse_options(const std::vector<std::string>& args, Options* o) {
  using Setter = std::function<void(const std::string& flag, const std::string& value)>;
  auto count = [](int64_t* dst, int64_t min) -> Setter {
    return [=](const std::string& flag, const std::string& v) {
      *dst = parse_int_option(flag, v, min);
    };
  };
  const std::map<std::string, Setter> valued{
      {"--pattern",
       [&](const std::string& flag, const std::string& v) {
         o->patterns = split_list(flag, v);
         for (const auto& p : o->patterns)
           if (std::find(kPatterns.begin(), kPatterns.end(), p) == kPatterns.end())
             throw usage_error(str("--pattern: unknown pattern '", p,
                                   "' (expected dense, flash, longformer, bigbird, strided or "
                                   "linformer)"));
       }},
      {"--n",
       [&](const std::string& flag, const std::string& v) {
         o->ns.clear();
         for (const auto& n : split_list(flag, v)) o->ns.push_back(parse_int_option(flag, n, 1));
       }},
      {"--global-tokens",
       [&](const std::string& flag, const std::string& v) {
         o->global_tokens.clear();
         if (v != "none")
           for (const auto& p : split_list(flag, v))
             o->global_tokens.push_back(parse_int_option(flag, p, 0));
       }},
      {"--stride",
       [&](const std::string& flag, const std::string& v) {
         o->stride = v == "auto" ? 0 : parse_int_option(flag, v, 1);
       }},
      {"--heads-scheme",
       [&](const std::string& flag, const std::string& v) {
         if (v != "mha" && v != "gqa" && v != "mqa" && v != "mla")
           throw usage_error(str(flag, ": expected mha, gqa, mqa or mla, got '", v, "'"));
         o->heads_scheme = v;
       }},
      {"--device",
       [&](const std::string& flag, const std::string& v) {
         if (v != "cpu" && v != "cuda")
           throw usage_error(str(flag, ": expected cpu or cuda, got '", v, "'"));
         o->device = v;
       }},
      {"--dtype",
       [&](const std::string& flag, const std::string& v) {
         if (v != "bf16" && v != "fp32")
           throw usage_error(str(flag, ": expected bf16 or fp32, got '", v, "'"));
         o->dtype = v;
       }},
      {"--jsonl", [&](const std::string&, const std::string& v) { o->jsonl = v; }},
      {"--time-budget", count(&o->time_budget_s, 0)},
      {"--k", count(&o->k, 1)},
      {"--n-kv-head", count(&o->n_kv_head, 1)},
      {"--kv-rank", count(&o->kv_rank, 1)},
      {"--rope-dim", count(&o->rope_dim, 2)},
      {"--heads", count(&o->heads, 1)},
      {"--head-dim", count(&o->head_dim, 1)},
      {"--batch", count(&o->batch, 1)},
      {"--block-size", count(&o->block, 1)},
      {"--repeats", count(&o->repeats, 1)},
      {"--window", count(&o->window, 0)},
      {"--dilation", count(&o->dilation, 1)},
      {"--window-blocks", count(&o->window_blocks, 0)},
      {"--global-blocks", count(&o->global_blocks, 0)},
      {"--random-blocks", count(&o->random_blocks, 0)},
  };
  const std::map<std::string, bool*> switches{
      {"--causal", &o->causal}, {"--json", &o->json}, {"--sweep", &o->sweep}};
  auto check = [&] {
    if (o->heads % o->kv_heads() != 0)
      throw usage_error(str("--n-kv-head ", o->kv_heads(), " must divide --heads ", o->heads));
    for (const auto& p : o->patterns)
      if (p == "linformer" && o->causal)
        throw usage_error(
            "--pattern linformer mixes future keys into every key: it has no causal form");
    if (o->device != "cuda" && (o->sweep || o->time_budget_s > 0))
      throw usage_error("--sweep and --time-budget need --device cuda");
  };
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i], value;
    bool inline_value = false;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      inline_value = true;
    }
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return false;
    }
    if (const auto it = valued.find(flag); it != valued.end()) {
      if (!inline_value) {
        if (i + 1 >= args.size()) throw usage_error(str(flag, " needs a value (see --help)"));
        value = args[++i];
      }
      it->second(flag, value);
    } else if (const auto sw = switches.find(flag); sw != switches.end()) {
      if (inline_value) throw usage_error(str(flag, " takes no value, got '", value, "'"));
      *sw->second = true;
    } else {
      throw usage_error(str("bench attention: unknown argument '", args[i], "' (see --help)"));
    }
  }
  check();
  return true;
}

struct Row {
  std::string pattern, skipped;
  int64_t n = 0, blocks = 0;
  double fwd_ms = 0, fwd_bwd_ms = 0, fwd_gflops = 0, gflops = 0, tile_gflops = 0, peak_mb = -1,
         density = 0, mask_ms = 0, mask_mb = 0;
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

attn::MaskSet make_masks(const Options& o, const std::string& pattern, int64_t n) {
  const int block = int(o.block);
  if (pattern == "longformer")
    return attn::longformer_masks(n, block, o.window, std::vector<int64_t>(o.heads, o.dilation),
                                  o.global_tokens, o.causal);
  if (pattern == "bigbird")
    return attn::bigbird_masks(n, block, o.window_blocks, o.global_blocks, o.random_blocks,
                               o.causal, /*seed=*/1, /*layer=*/0, int(o.heads), -1);
  if (pattern == "strided")
    return attn::MaskSet::shared(
        attn::strided_mask(n, block, o.stride > 0 ? o.stride : attn::stride_auto(n), o.causal));
  if (pattern == "linformer") return attn::MaskSet::shared(attn::full_mask(n, o.k, block));
  return attn::MaskSet::shared(o.causal ? attn::causal_mask(n, block)
                                        : attn::full_mask(n, n, block));
}

// Totals over every (sample, head) of the set, each distinct mask measured once.
struct MaskTotals {
  double allowed = 0, computed = 0, blocks = 0, bytes = 0;
};

MaskTotals totals(const attn::MaskSet& set, int64_t B, int64_t H) {
  std::vector<int64_t> uses(set.masks.size(), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) ++uses[b * set.b_stride + h * set.h_stride];
  MaskTotals t;
  auto bytes = [](const attn::BlockMask& m) {
    double x = double(m.row_ptr.size()) * 8 + double(m.col.size()) * 5;
    if (m.order) x += double(m.order->pos.size() + m.order->inv.size()) * 8;
    if (m.rule.globals) x += double(m.rule.globals->is_global.size());
    return x;
  };
  for (size_t i = 0; i < set.masks.size(); ++i) {
    const attn::BlockMask& m = set.masks[i];
    t.bytes += bytes(m);
    for (const attn::BlockMask& p : m.parts) t.bytes += bytes(p);
    if (uses[i] == 0) continue;
    t.allowed += double(uses[i]) * double(m.allowed_scores());
    t.computed += double(uses[i]) * double(m.computed_scores());
    t.blocks += double(uses[i]) * double(m.blocks_computed());
  }
  return t;
}

Row run_row(const Options& o, const std::string& pattern, int64_t n) {
  attn::AttnShape s;
  s.B = o.batch;
  s.H = o.heads;
  s.Hkv = o.kv_heads();
  s.Tq = s.Tk = n;
  s.D = o.head_dim;
  const bool linformer = pattern == "linformer";
  if (linformer) s.Tk = o.k;
  Row row;
  row.pattern = pattern;
  row.n = n;
  const double t0 = now_s();
  const attn::MaskSet masks = make_masks(o, pattern, n);
  row.mask_ms = (now_s() - t0) * 1e3;
  const MaskTotals t = totals(masks, s.B, s.H);
  const double heads = double(s.B * s.H);
  const bool dense = pattern == "dense";
  row.mask_mb = t.bytes / (1 << 20);
  row.density = t.allowed / heads / (double(n) * double(n));  // linformer: k / n
  const double nb = double(masks.masks[0].n_qblocks());
  row.blocks = int64_t(dense ? nb * nb : t.blocks / heads);
  const double computed = dense ? heads * double(n) * double(n) : t.computed;

  const double probs_bytes = heads * n * n * sizeof(float);
  const double phys_bytes = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
  if (dense && probs_bytes > 0.4 * phys_bytes) {
    row.skipped =
        str("dense probabilities need ", int64_t(probs_bytes / (1 << 20)), " MiB, over 40% of the ",
            int64_t(phys_bytes / (1 << 20)), " MiB of physical memory");
    return row;
  }

  const int64_t nq = s.B * s.H * n * s.D, nkv = s.B * s.Hkv * n * s.D;
  const std::vector<float> q = random_tensor(nq, 1), k = random_tensor(nkv, 2),
                           v = random_tensor(nkv, 3), dout = random_tensor(nq, 4);
  std::vector<float> out(nq), dq(nq), dk(nkv), dv(nkv), saved;
  const float scale = 1.0f / std::sqrt(float(s.D));
  if (linformer) {
    // Keys and values projected along the sequence by E, F [k, n], then exact attention over
    // the k projected rows; backward includes the projections' gradients.
    const int64_t np = s.B * s.Hkv * o.k * s.D;
    const std::vector<float> E = random_tensor(o.k * n, 5), F = random_tensor(o.k * n, 6);
    std::vector<float> kp(np), vp(np), dkp(np), dvp(np), dE(o.k * n), dF(o.k * n);
    measure(
        o, &row, [&] { saved.resize(s.B * s.H * n); },
        [&] {
          linformer_project_forward(E.data(), n, o.k, n, k.data(), kp.data(), s.B, s.Hkv, s.D);
          linformer_project_forward(F.data(), n, o.k, n, v.data(), vp.data(), s.B, s.Hkv, s.D);
          attn::flash_forward<float>(s, masks, q.data(), kp.data(), vp.data(), out.data(),
                                     saved.data(), scale);
        },
        [&] {
          attn::flash_backward<float>(s, masks, q.data(), kp.data(), vp.data(), out.data(),
                                      saved.data(), dout.data(), dq.data(), dkp.data(), dvp.data(),
                                      scale);
          linformer_project_backward(E.data(), n, o.k, n, k.data(), dkp.data(), dk.data(),
                                     dE.data(), s.B, s.Hkv, s.D);
          linformer_project_backward(F.data(), n, o.k, n, v.data(), dvp.data(), dv.data(),
                                     dF.data(), s.B, s.Hkv, s.D);
        });
  } else if (!dense) {
    measure(
        o, &row, [&] { saved.resize(s.B * s.H * n); },
        [&] {
          attn::flash_forward<float>(s, masks, q.data(), k.data(), v.data(), out.data(),
                                     saved.data(), scale);
        },
        [&] {
          attn::flash_backward<float>(s, masks, q.data(), k.data(), v.data(), out.data(),
                                      saved.data(), dout.data(), dq.data(), dk.data(), dv.data(),
                                      scale);
        });
  } else {
    measure(
        o, &row, [&] { saved.resize(s.B * s.H * n * n); },
        [&] {
          attn::dense_forward<float>(s, masks, q.data(), k.data(), v.data(), out.data(),
                                     saved.data(), scale);
        },
        [&] {
          attn::dense_backward<float>(s, q.data(), k.data(), v.data(), saved.data(), dout.data(),
                                      dq.data(), dk.data(), dv.data(), scale);
        });
  }
  row.fwd_gflops = 4.0 * s.D * t.allowed / (row.fwd_ms * 1e-3) * 1e-9;
  row.gflops = 12.0 * s.D * t.allowed / (row.fwd_bwd_ms * 1e-3) * 1e-9;
  row.tile_gflops = 12.0 * s.D * computed / (row.fwd_bwd_ms * 1e-3) * 1e-9;
  return row;
}

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

// The parameters that shaped this row's mask.
std::string pattern_params(const Options& o, const Row& r) {
  if (r.pattern == "longformer") {
    std::string globals;
    for (int64_t p : o.global_tokens) globals += (globals.empty() ? "" : ",") + str(p);
    return str(",\"window\":", o.window, ",\"dilation\":", o.dilation, ",\"global_tokens\":[",
               globals, "]");
  }
  if (r.pattern == "bigbird")
    return str(",\"window_blocks\":", o.window_blocks, ",\"global_blocks\":", o.global_blocks,
               ",\"random_blocks\":", o.random_blocks);
  if (r.pattern == "strided")
    return str(",\"stride\":", o.stride > 0 ? o.stride : attn::stride_auto(r.n));
  if (r.pattern == "linformer") return str(",\"k\":", o.k);
  if (o.heads_scheme == "mla") return str(",\"kv_rank\":", o.kv_rank, ",\"rope_dim\":", o.rope_dim);
  return "";
}

std::string json_row(const Options& o, const Row& r, double gemm_gflops) {
  std::string line =
      str("{\"pattern\":\"", r.pattern, "\",\"heads_scheme\":\"", o.heads_scheme, "\",\"n\":", r.n,
          ",\"batch\":", o.batch, ",\"heads\":", o.heads, ",\"n_kv_head\":", o.kv_heads(),
          ",\"kv_values_per_token\":", o.kv_values_per_token(), ",\"head_dim\":", o.head_dim,
          ",\"causal\":", o.causal ? "true" : "false", ",\"block_size\":", o.block,
          pattern_params(o, r));
  if (!r.skipped.empty()) return line + ",\"skipped\":\"" + r.skipped + "\"}";
  char buf[640];
  std::snprintf(buf, sizeof buf,
                ",\"fwd_ms\":%.3f,\"fwd_bwd_ms\":%.3f,\"fwd_gflops\":%.3f,\"gflops\":%.3f,"
                "\"tile_gflops\":%.3f,\"gemm_gflops\":%.3f,\"gemm_ratio\":%.4f,"
                "\"peak_mem_mb\":%s,\"mask_ms\":%.3f,\"mask_mb\":%.3f,"
                "\"blocks_computed\":%lld,\"density\":%.6f,\"threads\":%d}",
                r.fwd_ms, r.fwd_bwd_ms, r.fwd_gflops, r.gflops, r.tile_gflops, gemm_gflops,
                r.gflops / gemm_gflops, r.peak_mb < 0 ? "null" : fixed(r.peak_mb, 2).c_str(),
                r.mask_ms, r.mask_mb, static_cast<long long>(r.blocks), r.density,
                omp_get_max_threads());
  return line + buf;
}

void print_table_header(const Options& o, double gemm_gflops) {
  std::printf(
      "attention: batch %lld, heads %lld (%s, %lld K/V heads, %lld KV-cache values per token), "
      "head_dim %lld, %s, block %lld, %d threads; fp32 GEMM rate %.1f GFLOP/s\n",
      static_cast<long long>(o.batch), static_cast<long long>(o.heads), o.heads_scheme.c_str(),
      static_cast<long long>(o.kv_heads()), static_cast<long long>(o.kv_values_per_token()),
      static_cast<long long>(o.head_dim), o.causal ? "causal" : "bidirectional",
      static_cast<long long>(o.block), omp_get_max_threads(), gemm_gflops);
  std::printf("%-10s %7s %10s %11s %10s %8s %11s %10s %11s %8s %8s %10s %8s\n", "pattern", "n",
              "fwd_ms", "fwd_bwd_ms", "fwd_gflops", "gflops", "tile_gflops", "gemm_ratio",
              "peak_mem_mb", "mask_ms", "mask_mb", "blocks", "density");
}

void print_table_row(const Row& r, double gemm_gflops) {
  if (!r.skipped.empty()) {
    std::printf("%-10s %7lld  skipped: %s\n", r.pattern.c_str(), static_cast<long long>(r.n),
                r.skipped.c_str());
    return;
  }
  const std::string peak = r.peak_mb < 0 ? "n/a" : fixed(r.peak_mb, 1);
  std::printf(
      "%-10s %7lld %10.2f %11.2f %10.2f %8.2f %11.2f %10.3f %11s %8.2f %8.2f %10lld %8.4f\n",
      r.pattern.c_str(), static_cast<long long>(r.n), r.fwd_ms, r.fwd_bwd_ms, r.fwd_gflops,
      r.gflops, r.tile_gflops, r.gflops / gemm_gflops, peak.c_str(), r.mask_ms, r.mask_mb,
      static_cast<long long>(r.blocks), r.density);
}

}  // namespace

int bench_attention_main(const std::vector<std::string>& args) {
  Options o;
  if (!parse_options(args, &o)) return 0;
  if (o.device == "cuda") {
#if LONGCTX_HAVE_CUDA_KERNELS
    if (o.heads_scheme == "mla")
      throw usage_error("bench attention --device cuda: --heads-scheme mla runs on the CPU only");
    // Every case's references are built from the masks, so a wrong block would fail them all.
    if (o.block != attn::kPlanBlock)
      throw usage_error(str("bench attention --device cuda: --block-size must be ",
                            attn::kPlanBlock, " (the tensor-core kernels' tile), got ", o.block));
    GpuAttentionBench g;
    g.patterns = o.patterns;
    g.ns = o.ns;
    g.batch = o.batch;
    g.heads = o.heads;
    g.kv_heads = o.kv_heads();
    g.head_dim = o.head_dim;
    g.repeats = o.repeats;
    g.heads_scheme = o.heads_scheme;
    g.causal = o.causal;
    g.json = o.json;
    g.bf16 = o.dtype == "bf16";
    g.sweep = o.sweep;
    g.time_budget_s = double(o.time_budget_s);
    g.jsonl = o.jsonl;
    g.masks = [o](const std::string& pattern, int64_t n, int64_t heads, bool causal) {
      Options c = o;
      c.heads = heads;
      c.causal = causal;
      return make_masks(c, pattern, n);
    };
    g.params = [o](const std::string& pattern, int64_t n) {
      Row r;
      r.pattern = pattern;
      r.n = n;
      return pattern_params(o, r);
    };
    return bench_attention_cuda(g);
#else
    throw Error("bench attention --device cuda: this longctx was built without CUDA kernels");
#endif
  }
  std::ofstream jsonl;
  if (!o.jsonl.empty()) {
    jsonl.open(o.jsonl);
    if (!jsonl) throw Error(str("bench attention: cannot write --jsonl file '", o.jsonl, "'"));
  }
  const double gemm_gflops = measure_gemm_gflops();
  if (!o.json) print_table_header(o, gemm_gflops);
  for (const auto& pattern : o.patterns)
    for (int64_t n : o.ns) {
      const Row r = run_row(o, pattern, n);
      const std::string line = json_row(o, r, gemm_gflops);
      if (o.json)
        std::printf("%s\n", line.c_str());
      else
        print_table_row(r, gemm_gflops);
      if (jsonl.is_open()) jsonl << line << '\n' << std::flush;
      std::fflush(stdout);
    }
  return 0;
}

}  // namespace longctx
