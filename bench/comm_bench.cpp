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

#include "core/cli_args.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/mpi_env.h"

namespace longctx {
namespace {

const char* kUsage =
    "usage: [mpirun -np N] longctx bench comm [--sizes 4K,1M,16M,64M] [--repeats N] [--json]\n"
    "\n"
    "Times all_reduce, reduce_scatter, all_gather, all_to_all and one ring step (send to the\n"
    "next rank while receiving from the previous) on fp32 messages of each size (K, M, G\n"
    "suffixes: bytes). Reports per row: op, bytes, ms (median of --repeats, default 10), algbw\n"
    "and busbw in GB/s, and bytes_per_rank counted by Comm (what the optimal algorithm sends).\n"
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

}  // namespace

int bench_comm_main(const std::vector<std::string>& args) {
  std::vector<int64_t> sizes{4096, 1 << 20, 16 << 20, 64 << 20};
  int repeats = 10;
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
    } else if (a == "--json") {
      json = true;
    } else {
      throw ConfigError(str("unknown argument '", a, "'\n", kUsage));
    }
  }
  auto comm = MpiEnv::active() ? make_mpi_world_comm() : make_self_comm();
  const int n = comm->size(), me = comm->rank();
  const double share_ar = 2.0 * (n - 1) / n, share = double(n - 1) / n;
  if (!json && me == 0)
    std::printf("bench comm: %d ranks (%s)\n%-15s %12s %10s %12s %12s %15s\n", n,
                comm->backend().c_str(), "op", "bytes", "ms", "algbw_GB/s", "busbw_GB/s",
                "bytes_per_rank");
  for (int64_t bytes : sizes) {
    const int64_t count = std::max<int64_t>(n, bytes / 4 / n * n);  // divisible by the ranks
    std::vector<float> a(static_cast<size_t>(count), 1.0f), b(static_cast<size_t>(count));
    struct Op {
      const char* name;
      double share;
      std::function<void()> run;
    };
    const std::vector<Op> ops{
        {"all_reduce", share_ar, [&] { comm->all_reduce_sum(a.data(), count); }},
        {"reduce_scatter", share, [&] { comm->reduce_scatter_sum(a.data(), b.data(), count / n); }},
        {"all_gather", share, [&] { comm->all_gather(a.data(), b.data(), count / n); }},
        {"all_to_all", share, [&] { comm->all_to_all(a.data(), b.data(), count / n); }},
        {"ring_step", n > 1 ? 1.0 : 0.0,
         [&] { comm->send_recv(a.data(), count, (me + 1) % n, b.data(), count, (me + n - 1) % n); }},
    };
    for (const Op& op : ops) {
      op.run();  // warm-up
      comm->take_stats();
      std::vector<double> ms;
      for (int r = 0; r < repeats; ++r) {
        comm->barrier();
        const auto t0 = std::chrono::steady_clock::now();
        op.run();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                         .count());
      }
      int64_t counted = 0;
      for (const auto& [name, k] : comm->take_stats()) counted += k.bytes;
      std::sort(ms.begin(), ms.end());
      double med = ms[ms.size() / 2];
      comm->all_reduce_sum(&med, 1);  // the ranks' mean of medians
      med /= n;
      const double total = double(count) * 4, algbw = total / (med * 1e-3) / 1e9;
      if (me != 0) continue;
      nlohmann::json j{{"op", op.name},          {"bytes", int64_t(total)},
                       {"ranks", n},             {"ms", med},
                       {"algbw_gbps", algbw},    {"busbw_gbps", algbw * op.share},
                       {"bytes_per_rank", counted / repeats}};
      if (json)
        std::printf("%s\n", j.dump().c_str());
      else
        std::printf("%-15s %12lld %10.3f %12.2f %12.2f %15lld\n", op.name,
                    static_cast<long long>(total), med, algbw, algbw * op.share,
                    static_cast<long long>(counted / repeats));
    }
  }
  return 0;
}

}  // namespace longctx
