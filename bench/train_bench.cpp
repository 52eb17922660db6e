// Training-step throughput of a config, against this machine's GEMM rate measured in the
// same process: tokens/s, achieved GFLOP/s (model FLOPs, recompute not counted) and MFU.
#include "bench/train_bench.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/cli_args.h"
#include "core/config.h"
#include "core/cuda_env.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/memory.h"
#include "core/mpi_env.h"
#include "trainer/trainer.h"

#if LONGCTX_HAVE_CUDA_KERNELS
#include "core/gemm_cuda.h"
#endif

namespace longctx {

namespace {
const char* kUsage =
    "usage: longctx bench train CONFIG [--set key=value ...] [--steps N] [--warmup N] [--json]\n"
    "\n"
    "Times training steps of CONFIG's model on its data and reports the median step.\n"
    "  --set key=value  override a config key (repeatable), e.g. --set data.seq_len=16384\n"
    "  --steps N        timed steps (default 5)\n"
    "  --warmup N       untimed steps first (default 1)\n"
    "  --json           one JSON object on stdout, nothing else\n"
    "Reports tokens_per_s, step_ms, gflops (model FLOPs per second: 6 per weight per token plus\n"
    "attention scores computed; recomputation not counted), gemm_gflops (this machine's fp32\n"
    "GEMM rate measured in the same process), mfu = gflops / gemm_gflops, peak_rss_mb, and\n"
    "kv_mb: the keys and values (mla: latents) the layers keep for backward.\n"
    "With run.device: cuda (e.g. --set run.device=cuda --set train.precision=bf16) gemm_gflops is\n"
    "the GPU's bf16 GEMM rate measured with cuBLASLt, peak_gflops its nominal dense bf16 peak,\n"
    "mfu = gflops / peak_gflops (mfu_vs_gemm against the measured rate) and peak_gpu_mb its\n"
    "memory high-water mark.\n";

}  // namespace

int bench_train_main(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> sets;
  int steps = 5, warmup = 1;
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw Error(str(a, " needs a value\n", kUsage));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--set") sets.push_back(value());
    else if (a == "--steps") steps = int(parse_int_option(a, value(), 1));
    else if (a == "--warmup") warmup = int(parse_int_option(a, value(), 0));
    else if (a == "--json") json = true;
    else if (!a.empty() && a[0] == '-') throw Error(str("unknown option '", a, "'\n", kUsage));
    else if (path.empty()) path = a;
    else throw Error(str("unexpected argument '", a, "'\n", kUsage));
  }
  if (path.empty()) throw Error(str("bench train needs a CONFIG file\n", kUsage));
  Config cfg = load_config(path, sets);
  cfg.train.steps = std::max(cfg.train.steps, warmup + steps);  // keep the LR schedule defined

  const bool gpu = cfg.run.device == DeviceKind::cuda;
  Trainer trainer(cfg);
  // The rate MFU is measured against: this machine's fp32 GEMM on the CPU; on a GPU the bf16
  // GEMM measured here (cuBLASLt) and the GPU's nominal dense bf16 peak.
  double gemm = 0, peak = 0;
  std::string device_name;
  if (gpu) {
    device_name = cuda_device_name(local_rank());
    peak = nominal_bf16_tflops(device_name) * 1e3;
#if LONGCTX_HAVE_CUDA_KERNELS
    gemm = cuda::measure_gemm_tflops_bf16() * 1e3;
#endif
  } else {
    gemm = measure_gemm_gflops();
  }
  for (int i = 0; i < warmup; ++i) trainer.step();
  std::vector<double> ms;
  int64_t tokens = 0;
  for (int i = 0; i < steps; ++i) {
    const StepStats s = trainer.step();
    ms.push_back(s.step_ms);
    tokens = s.tokens;
  }
  std::sort(ms.begin(), ms.end());
  const double step_ms = ms[ms.size() / 2];
  const double tps = tokens / (step_ms / 1000.0);
  const double gflops = trainer.model().train_flops_per_token(cfg.data.seq_len) * tps * 1e-9;
  const double mfu = gpu ? (peak > 0 ? gflops / peak : gflops / gemm) : gflops / gemm;

  nlohmann::json j;
  j["config"] = path;
  j["pattern"] = name_of(cfg.attention.pattern);
  j["heads_scheme"] = name_of(cfg.attention.heads);
  j["seq_len"] = cfg.data.seq_len;
  j["micro_batch"] = cfg.train.micro_batch;
  j["grad_accum"] = cfg.train.grad_accum;
  j["recompute"] = name_of(cfg.train.recompute);
  j["params"] = trainer.model().params().size();
  j["tokens_per_s"] = tps;
  j["step_ms"] = step_ms;
  j["device"] = gpu ? device_name : "cpu";
  j["precision"] = name_of(cfg.train.precision);
  j["gflops"] = gflops;
  j["gemm_gflops"] = gemm;
  if (gpu) j["peak_gflops"] = peak;
  j["mfu"] = mfu;
  j["mfu_vs_gemm"] = gemm > 0 ? gflops / gemm : 0.0;
  j["activation_mb"] = trainer.activation_bytes() / 1048576.0;
  if (!gpu) j["kv_mb"] = trainer.model().kv_activation_bytes() / 1048576.0;
  j["peak_rss_mb"] = peak_rss_mb();
  if (gpu) j["peak_gpu_mb"] = trainer.gpu()->peak_device_mb();
  if (json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("bench train %s: %s attention, %s heads, seq %d, batch %d x %d accum, recompute %s\n",
                path.c_str(), name_of(cfg.attention.pattern), name_of(cfg.attention.heads),
                cfg.data.seq_len,
                cfg.train.micro_batch, cfg.train.grad_accum, name_of(cfg.train.recompute));
    std::printf("  step %.1f ms (median of %d) | %.0f tokens/s | %.1f GFLOP/s\n", step_ms, steps,
                tps, gflops);
    if (gpu)
      std::printf("  %s, %s | bf16 GEMM %.1f TFLOP/s measured, peak %.0f TFLOP/s nominal | MFU "
                  "%.1f%% (%.1f%% of the measured GEMM) | activations %.0f MiB | peak GPU memory "
                  "%.0f MiB\n",
                  device_name.c_str(), name_of(cfg.train.precision), gemm * 1e-3, peak * 1e-3,
                  100.0 * mfu, gemm > 0 ? 100.0 * gflops / gemm : 0.0,
                  j["activation_mb"].get<double>(), trainer.gpu()->peak_device_mb());
    else
      std::printf("  GEMM rate %.1f GFLOP/s | MFU vs GEMM %.1f%% | activations %.0f MiB (K/V kept "
                  "for backward %.1f MiB) | peak RSS %.0f MiB\n",
                  gemm, 100.0 * mfu, j["activation_mb"].get<double>(), j["kv_mb"].get<double>(),
                  peak_rss_mb());
  }
  return 0;
}

}  // namespace longctx
