// The `longctx` command: dispatches to subcommands; every failure ends with one message on
// stderr and a non-zero exit code (2 for configuration and usage errors).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "bench/attention_bench.h"
#include "bench/comm_bench.h"
#include "bench/loader_bench.h"
#include "bench/train_bench.h"
#include "core/config.h"
#include "core/error.h"
#include "core/mpi_env.h"
#include "launch/commands.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

const char* kMainHelp =
    "longctx: train transformers on long sequences (CPU backend: Eigen + OpenMP)\n"
    "\n"
    "usage: longctx COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set key=value ...]   train the model described by a YAML config\n"
    "  tokenize INPUT... --out DIR [OPTS]   text files, folders or JSONL -> tokenized HDF5 shards\n"
    "  data inspect|verify PATH             summarize or fully check a tokenized dataset\n"
    "  ckpt inspect|export PATH [OPTS]      summarize a checkpoint, or export it as safetensors\n"
    "  eval CHECKPOINT --task T [OPTS]      ppl, passkey, classify, listops, kvcache evaluations\n"
    "  generate CKPT --prompt TEXT [OPTS]   continue a prompt with a causal LM checkpoint (KV cache)\n"
    "  sweep FILE [OPTIONS]                 run an ablation sweep; report.md, report.jsonl, plots\n"
    "  bench attention [OPTIONS]            time attention kernels (forward, forward+backward)\n"
    "  bench train CONFIG [OPTIONS]         time training steps; tokens/s, GFLOP/s, MFU\n"
    "  bench loader DATASET [OPTIONS]       data loader throughput and memory\n"
    "  bench comm [OPTIONS]                 collective bandwidth over the job's ranks\n"
    "\n"
    "Run `longctx COMMAND --help` for a command's options. Configs: see configs/ and README.md.\n"
    "Many processes: launch/mpirun.sh NP train CONFIG (or srun via launch/slurm.sbatch); the\n"
    "grid is dp x sp with parallel.sp given, and MPI starts only under a launcher.\n"
    "Threads: OMP_NUM_THREADS or train.threads. Exit codes: 0 ok, 1 runtime error, 2 bad\n"
    "config or usage.\n";

const char* kTrainHelp =
    "usage: longctx train CONFIG [--set key=value ...] [--force]\n"
    "\n"
    "Trains the model of CONFIG (YAML). The config is validated as a whole first: an unknown\n"
    "key, a wrong type, an impossible combination, a YAML syntax error or a file that sets no\n"
    "key at all stops with exit code 2 naming the file or the key.\n"
    "  --set key=value  override any key, e.g. --set train.steps=50 --set attention.pattern=dense\n"
    "                   (repeatable; values are YAML scalars)\n"
    "  --force          replace the run that run.out_dir already holds (as run.overwrite: true):\n"
    "                   its config.yaml, metrics.jsonl, summary.json and checkpoints are removed\n"
    "                   first; nothing else in the directory is touched\n"
    "\n"
    "Under mpirun or srun every rank runs this command: dp x sp ranks (parallel.sp, sp_mode,\n"
    "zero, bucket_mb, overlap); rank 0 alone prints and writes the run directory; an error on\n"
    "any rank ends the job.\n"
    "\n"
    "GPUs: --set run.device=cuda trains on the GPU of each rank's local rank (one rank per GPU,\n"
    "gradients summed over NCCL), in train.precision bf16 (fp32 master weights) or fp32; decoder\n"
    "LMs with mha/gqa/mqa/mla heads. In bf16, flash, longformer, bigbird, strided and document\n"
    "masks run tensor-core kernels over the CPU engine's block lists (train.deterministic: true\n"
    "gives the same bits every run); fp32 runs dense and flash. The config names what else is\n"
    "refused.\n"
    "Checkpoints move between CPU and GPU runs.\n"
    "\n"
    "The run directory (run.out_dir) holds one run: training into a directory that already holds\n"
    "one (config.yaml, metrics.jsonl, summary.json or checkpoints) is refused with exit code 2\n"
    "unless the run resumes (checkpoint.resume) or --force replaces it. It gets config.yaml (the\n"
    "merged config), metrics.jsonl (one JSON object per logged step: step, loss, lr, grad_norm,\n"
    "tokens, tokens_per_s, step_ms, peak_rss_mb, peak_gpu_mb on a GPU, data_wait_ms, comm_bytes,\n"
    "comm_ms; evaluations as {step, eval}), summary.json and the final checkpoint at the end.\n"
    "Steps are numbered from 1 everywhere: step N is the N-th optimizer step, and the checkpoint\n"
    "step_N.h5 holds the state after it. A progress line is printed at step 1, every log.every\n"
    "steps and at the last step.\n"
    "\n"
    "Checkpoints: run.out_dir/checkpoints/step_NNNNNNNN.h5 after the last step, and every\n"
    "checkpoint.every steps; the newest checkpoint.keep kept, `latest` naming the newest. They\n"
    "are written from a copy on a background thread. longctx eval, generate and ckpt export take\n"
    "the run directory (or `latest`) for its newest checkpoint. checkpoint.resume: none | auto\n"
    "(the newest checkpoint that reads back whole; damaged ones are skipped with a warning, and\n"
    "if none reads back the run stops listing each file and why) | PATH. A resume may change the\n"
    "steps, LR schedule, batch, grid (dp x sp), device and cadences; a change to the model,\n"
    "attention, objective, data or seed is refused with the list of keys. The resumed run\n"
    "continues metrics.jsonl, dropping what the interrupted run logged after its checkpoint.\n"
    "Stopping early: train.stop_after N, or SIGTERM / SIGUSR1 (as Slurm sends before a time\n"
    "limit), finishes the step, writes a checkpoint and exits 0.\n";

const char* kBenchHelp =
    "usage: longctx bench attention [OPTIONS]    (see `longctx bench attention --help`)\n"
    "       longctx bench train CONFIG [OPTIONS] (see `longctx bench train --help`)\n"
    "       longctx bench loader DATASET [OPTIONS] (see `longctx bench loader --help`)\n"
    "       longctx bench comm [OPTIONS]         (see `longctx bench comm --help`)\n";

[[noreturn]] void usage_error(const std::string& msg) { throw ConfigError(msg); }

int cmd_train(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> sets;
  bool force = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kTrainHelp, stdout);
      return 0;
    } else if (a == "--force") {
      force = true;
    } else if (a == "--set") {
      if (i + 1 >= args.size()) usage_error("--set needs key=value");
      sets.push_back(args[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      sets.push_back(a.substr(6));
    } else if (!a.empty() && a[0] == '-') {
      usage_error(str("unknown option '", a, "' for train\n", kTrainHelp));
    } else if (path.empty()) {
      path = a;
    } else {
      usage_error(str("unexpected argument '", a, "'\n", kTrainHelp));
    }
  }
  if (path.empty()) usage_error(str("train needs a CONFIG file\n", kTrainHelp));
  return run_training(load_config(path, sets), force);
}

int cmd_bench(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kBenchHelp, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "attention") return bench_attention_main(rest);
  if (args[0] == "train") return bench_train_main(rest);
  if (args[0] == "loader") return bench_loader_main(rest);
  if (args[0] == "comm") return bench_comm_main(rest);
  usage_error(str("unknown benchmark '", args[0], "'\n", kBenchHelp));
}

int run(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(kMainHelp, stderr);
    return 2;
  }
  const std::string& cmd = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kMainHelp, stdout);
    return 0;
  }
  if (cmd == "train") return cmd_train(rest);
  if (cmd == "bench") return cmd_bench(rest);
  if (cmd == "tokenize") return tokenize_main(rest);
  if (cmd == "data") return data_main(rest);
  if (cmd == "ckpt") return ckpt_main(rest);
  if (cmd == "eval") return eval_main(rest);
  if (cmd == "generate") return generate_main(rest);
  if (cmd == "sweep") return sweep_main(rest);
  usage_error(str("unknown command '", cmd, "'\n", kMainHelp));
}

}  // namespace
}  // namespace longctx

namespace {

// One message on stderr; under mpirun it names the rank, and the whole job ends with it
// (MPI_Abort) instead of leaving the other ranks waiting in a collective.
int fail(const std::string& msg, int code) {
  using longctx::MpiEnv;
  if (MpiEnv::size() > 1)
    std::fprintf(stderr, "error (rank %d of %d): %s\n", MpiEnv::rank(), MpiEnv::size(), msg.c_str());
  else
    std::fprintf(stderr, "error: %s\n", msg.c_str());
  std::fflush(stderr);
  MpiEnv::abort_job(code);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  longctx::MpiEnv mpi(&argc, &argv);
  try {
    return longctx::run(argc, argv);
  } catch (const longctx::Error& e) {
    return fail(e.what(), e.exit_code);
  } catch (const std::bad_alloc&) {
    return fail("out of memory (reduce train.micro_batch or data.seq_len, or set "
                "train.recompute: block)", 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}
