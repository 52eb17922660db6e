// Collective throughput over the ranks of the job, in nccl-tests' terms: for a message of S
// bytes taking t seconds, algbw = S / t and busbw = algbw × the share of S an optimal algorithm
// moves through each rank (all-reduce 2(N−1)/N; reduce-scatter, all-gather and all-to-all
// (N−1)/N; a ring step 1). busbw near the link's bandwidth means the algorithm is optimal.
#include "bench/comm_bench.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "attention/block_mask.h"
#include "attention/flash.h"
#include "attention/longformer.h"
#include "attention/ring_attention.h"
#include "attention/sp_layout.h"
#include "attention/ulysses.h"
#include "core/cli_args.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/mpi_env.h"
#include "core/ring_collectives.h"
#include "core/rng.h"

namespace longctx {
namespace {

const char* kUsage =
    "usage: [mpirun -np N] longctx bench comm [--sizes 4K,1M,16M,64M] [--repeats N]\n"
    "                                         [--attention T] [--json]\n"
    "\n"
    "Collectives: times all_reduce, reduce_scatter, all_gather, all_to_all and one ring step\n"
    "(send to the next rank while receiving from the previous) on fp32 messages of each size\n"
    "(K, M, G suffixes: bytes), as MPI's implementation (impl mpi) and as longctx's own ring\n"
    "algorithms on send/recv (impl ring). Per row: op, impl, bytes, ms (median of --repeats,\n"
    "default 10), algbw and busbw in GB/s, bytes_per_rank and algo_ratio. For ring rows\n"
    "bytes_per_rank is what the rank actually sent and algo_ratio divides it by the algorithm's\n"
    "minimum (all-reduce 2(N-1)/N, reduce-scatter and all-gather (N-1)/N of the message); MPI\n"
    "does not expose its traffic, so its rows show that minimum and no ratio.\n"
    "\n"
    "Attention (--attention T, default 4096; 0 skips): sequence-parallel attention on one\n"
    "sequence of T positions, 8 heads of dim 64, over all ranks. Ulysses (causal): all-to-all\n"
    "bytes per rank per pass, as a share of the layer's activations (T x d_model fp32) beside\n"
    "the expected 4(N-1)/N^2 (forward: q, k, v in, out back; backward: dout in, dq, dk, dv\n"
    "back). Ring: K/V exchanges per pass for causal full\n"
    "attention (zigzag) and a sliding window of 256 (contiguous chunks), beside the expected\n"
    "N-1 and 2*ceil(256 / chunk).\n"
    "Launch it with mpirun or srun for more than one rank; rank 0 prints.\n";

int64_t parse_size(const std::string& s) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    const std::string unit = s.substr(used);
    if (unit == "K" || unit == "k") v *= 1024;
    else if (unit == "M" || unit == "m") v *= 1048576;
    else if (unit == "G" || unit == "g") v *= 1073741824.0;
    else if (!unit.empty()) throw std::invalid_argument(unit);
    if (v >= 4) return int64_t(v);
  } catch (const std::exception&) {
  }
  throw ConfigError(str("--sizes expects sizes such as 4K, 1M, 16M (at least 4 bytes), got '", s,
                        "'"));
}

// One printed row: rank 0 prints it as a table line or a JSON object.
struct Row {
  std::string op, impl;
  int64_t bytes = 0;        // message (collectives) or layer activations (attention)
  double ms = 0;
  double algbw = -1, busbw = -1;
  int64_t per_rank = 0;     // bytes this rank sent
  double ratio = -1;        // per_rank / the algorithm's minimum; < 0: unknown
  std::string extra = {};   // attention rows: what was counted against what was expected
  nlohmann::json fields = nlohmann::json::object();  // ... the same, for --json
};

void print_row(const Row& r, bool json, int ranks) {
  if (json) {
    nlohmann::json j{{"op", r.op},       {"impl", r.impl},         {"bytes", r.bytes},
                     {"ranks", ranks},   {"ms", r.ms},             {"bytes_per_rank", r.per_rank}};
    if (r.algbw >= 0) j["algbw_gbps"] = r.algbw, j["busbw_gbps"] = r.busbw;
    j["algo_ratio"] = r.ratio >= 0 ? nlohmann::json(r.ratio) : nlohmann::json(nullptr);
    j.update(r.fields);
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  auto num = [](double v, const char* fmt) {
    char b[32];
    if (v < 0) return std::string("-");
    std::snprintf(b, sizeof b, fmt, v);
    return std::string(b);
  };
  std::printf("%-16s %-5s %12lld %10.3f %10s %10s %15lld %8s  %s\n", r.op.c_str(), r.impl.c_str(),
              static_cast<long long>(r.bytes), r.ms, num(r.algbw, "%.2f").c_str(),
              num(r.busbw, "%.2f").c_str(), static_cast<long long>(r.per_rank),
              num(r.ratio, "%.4f").c_str(), r.extra.c_str());
}

// Runs `fn` (after one warm-up) `repeats` times between barriers; returns the ranks' mean of the
// median milliseconds and the bytes this rank sent per run.
std::pair<double, int64_t> time_op(Comm& comm, int repeats, const std::function<void()>& fn) {
  fn();
  comm.take_stats();
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  int64_t sent = 0;
  for (const auto& [name, k] : comm.take_stats())
    if (name != "barrier") sent += k.bytes;
  std::sort(ms.begin(), ms.end());
  double med = ms[ms.size() / 2];
  comm.all_reduce_sum(&med, 1);
  comm.take_stats();
  return {med / comm.size(), sent / repeats};
}

void bench_collectives(Comm& comm, int64_t bytes, int repeats, bool json) {
  const int n = comm.size(), me = comm.rank();
  const int64_t count = std::max<int64_t>(n, bytes / 4 / n * n);  // divisible by the ranks
  std::vector<float> a(static_cast<size_t>(count), 1.0f), b(static_cast<size_t>(count));
  const double total = double(count) * 4;
  struct Op {
    const char* name;
    const char* impl;
    double share;  // of the message an optimal algorithm sends per rank
    std::function<void()> run;
  };
  const double ar = 2.0 * (n - 1) / n, one = double(n - 1) / n;
  const std::vector<Op> ops{
      {"all_reduce", "mpi", ar, [&] { comm.all_reduce_sum(a.data(), count); }},
      {"all_reduce", "ring", ar, [&] { ring_all_reduce_sum(comm, a.data(), count); }},
      {"reduce_scatter", "mpi", one, [&] { comm.reduce_scatter_sum(a.data(), b.data(), count / n); }},
      {"reduce_scatter", "ring", one,
       [&] { ring_reduce_scatter_sum(comm, a.data(), b.data(), count / n); }},
      {"all_gather", "mpi", one, [&] { comm.all_gather(a.data(), b.data(), count / n); }},
      {"all_gather", "ring", one, [&] { ring_all_gather(comm, a.data(), b.data(), count / n); }},
      {"all_to_all", "mpi", one, [&] { comm.all_to_all(a.data(), b.data(), count / n); }},
      {"ring_step", "mpi", n > 1 ? 1.0 : 0.0,
       [&] { comm.send_recv(a.data(), count, (me + 1) % n, b.data(), count, (me + n - 1) % n); }},
  };
  for (const Op& op : ops) {
    std::fill(a.begin(), a.end(), 1.0f);  // the all-reduces keep sums from growing without bound
    const auto [ms, sent] = time_op(comm, repeats, op.run);
    Row r{op.name, op.impl, int64_t(total), ms};
    r.algbw = total / (ms * 1e-3) / 1e9;
    r.busbw = r.algbw * op.share;
    r.per_rank = sent;
    const double minimum = op.share * total;
    if (std::string(op.impl) == "ring" && minimum > 0) r.ratio = sent / minimum;
    if (me == 0) print_row(r, json, n);
  }
}

// Sequence-parallel attention over every rank: what Ulysses moves and how many exchanges the
// ring makes, against what the algorithms should need.
void bench_attention(Comm& comm, int64_t T, int repeats, bool json) {
  using namespace attn;
  const int n = comm.size();
  const int64_t H = 8, D = 64, C = H * D, window = 256;
  const int block = 64;
  if (T % (2 * n) != 0)
    throw ConfigError(str("--attention ", T, " must be divisible by 2 x the ranks (", 2 * n, ")"));
  const int64_t Tl = T / n;
  const AttnShape local{1, H, H, Tl, Tl, D};
  const float scale = 1.0f / std::sqrt(float(D));
  Rng rng = Rng::stream(7, uint64_t(comm.rank()));
  auto fill = [&](int64_t k) {
    std::vector<float> x(static_cast<size_t>(k));
    for (float& e : x) e = float(rng.normal());
    return x;
  };
  std::vector<float> q = fill(H * Tl * D), k = fill(H * Tl * D), v = fill(H * Tl * D),
                     dout = fill(H * Tl * D), out(q.size()), lse(size_t(H * Tl)), dq(q.size()),
                     dk(q.size()), dv(q.size());
  const int64_t act = T * C * 4;  // the layer's activations, fp32
  const double expect_share = 4.0 * (n - 1) / (double(n) * n);
  const int me = comm.rank();

  const SpLayout contiguous = SpLayout::make(SpLayoutKind::contiguous, T, n);
  const MaskSet causal = MaskSet::shared(causal_mask(T, block));
  if (H % n == 0) {  // Ulysses splits the heads
    const auto [ms, sent] = time_op(comm, repeats, [&] {
      // As training runs it (MHA: the kv heads split exactly): q, k, v turn into the head
      // layout in place and stay so for backward; repeats permute them again (same cost).
      ulysses_forward_kept(comm, contiguous, local, causal, q.data(), k.data(), v.data(),
                           dq.data(), out.data(), lse.data(), scale);
    });
    Row r{"ulysses_fwd", "mpi", act, ms};
    r.per_rank = sent;
    r.ratio = double(sent) / act / expect_share;
    r.extra = str("share of activations ", double(sent) / act, " (expected ", expect_share, ")");
    r.fields = {{"activation_share", double(sent) / act}, {"expected_share", expect_share}};
    if (me == 0) print_row(r, json, n);
  }
  if (H % n == 0) {
    const auto [ms, sent] = time_op(comm, repeats, [&] {
      ulysses_backward_kept(comm, contiguous, local, causal, q.data(), k.data(), v.data(),
                            out.data(), lse.data(), dout.data(), dq.data(), dk.data(), dv.data(),
                            scale);
    });
    Row r{"ulysses_bwd", "mpi", act, ms};
    r.per_rank = sent;
    r.ratio = double(sent) / act / expect_share;
    r.extra = str("share of activations ", double(sent) / act, " (expected ", expect_share, ")");
    r.fields = {{"activation_share", double(sent) / act}, {"expected_share", expect_share}};
    if (me == 0) print_row(r, json, n);
  }
  struct RingCase {
    const char* name;
    SpLayout layout;
    MaskSet masks;
    int expected;
  };
  const int64_t halo = std::min<int64_t>(n - 1, 2 * ((window + Tl - 1) / Tl));
  const std::vector<RingCase> cases{
      {"ring_causal_fwd", SpLayout::make(SpLayoutKind::zigzag, T, n), causal, n - 1},
      {"ring_window_fwd", contiguous,
       MaskSet::shared(longformer_mask(T, block, window, 1, {}, false)), int(halo)},
  };
  for (const RingCase& c : cases) {
    const RingPlan plan = make_ring_plan(comm, c.layout, c.masks);
    const auto [ms, sent] = time_op(comm, repeats, [&] {
      ring_forward(comm, plan, local, q.data(), k.data(), v.data(), out.data(), lse.data(), scale);
    });
    Row r{c.name, "mpi", act, ms};
    r.per_rank = sent;
    r.extra = str(plan.exchanges(), " exchanges (expected ", c.expected, ")");
    r.fields = {{"exchanges", plan.exchanges()}, {"expected_exchanges", c.expected}};
    if (me == 0) print_row(r, json, n);
  }
}

}  // namespace

int bench_comm_main(const std::vector<std::string>& args) {
  std::vector<int64_t> sizes{4096, 1 << 20, 16 << 20, 64 << 20};
  int repeats = 10;
  int64_t attention_T = 4096;
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw ConfigError(str(a, " needs a value\n", kUsage));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--sizes") {
      sizes.clear();
      std::string list = value();
      for (size_t p = 0; p <= list.size();) {
        const size_t q = std::min(list.find(',', p), list.size());
        sizes.push_back(parse_size(list.substr(p, q - p)));
        p = q + 1;
      }
    } else if (a == "--repeats") {
      repeats = int(parse_int_option(a, value(), 1));
    } else if (a == "--attention") {
      attention_T = parse_int_option(a, value(), 0, 1 << 22);
    } else if (a == "--json") {
      json = true;
    } else {
      throw ConfigError(str("unknown argument '", a, "'\n", kUsage));
    }
  }
  auto comm = MpiEnv::active() ? make_mpi_world_comm() : make_self_comm();
  const int n = comm->size();
  if (!json && comm->rank() == 0)
    std::printf("bench comm: %d ranks (%s)\n%-16s %-5s %12s %10s %10s %10s %15s %8s\n", n,
                comm->backend().c_str(), "op", "impl", "bytes", "ms", "algbw_GB/s", "busbw_GB/s",
                "bytes_per_rank", "algo_ratio");
  for (int64_t bytes : sizes) bench_collectives(*comm, bytes, repeats, json);
  if (attention_T > 0 && n > 1) bench_attention(*comm, attention_T, std::min(repeats, 3), json);
  return 0;
}

}  // namespace longctx
