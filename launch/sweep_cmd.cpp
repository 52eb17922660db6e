// `longctx sweep`: ablations as a base config plus named variants, each trained in its own run
// directory, summarized in a report with plots.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/mpi_env.h"
#include "launch/commands.h"
#include "sweep/run_sweep.h"

namespace longctx {

namespace {

const char* kSweepHelp =
    "usage: longctx sweep FILE [--mpirun \"ARGS\"] [--only NAME,...] [--dry-run] [--force]\n"
    "\n"
    "Trains every variant of the sweep FILE (at every grid point), one run after another, then\n"
    "writes report.md and report.jsonl into its out_dir and plots through tools/plot.py.\n"
    "\n"
    "FILE (YAML):\n"
    "  base: ../quickstart.yaml        the base config, relative to FILE's directory or absolute\n"
    "  out_dir: runs/ablation          relative to the working dir (default runs/<FILE stem>)\n"
    "  overrides: {train.steps: 300}   config keys set for every run (optional)\n"
    "  variants:                       name -> config keys; {} runs the base unchanged\n"
    "    flash: {attention.pattern: flash}\n"
    "    longformer: {attention.pattern: longformer, attention.window: 128}\n"
    "  grid: {data.seq_len: [1024, 4096]}   optional: every variant at every combination\n"
    "Values are YAML scalars, lists ([0, 64]) or maps, as `train --set` takes them. A run sets,\n"
    "in this order: overrides, its variant's keys, its grid point's keys, run.out_dir and\n"
    "run.name. Variant names are letters, digits, '.', '_', '-'.\n"
    "\n"
    "Runs are named VARIANT, or with a grid VARIANT/KEY=VALUE[,KEY=VALUE...] (KEY: the grid\n"
    "key's last part, e.g. seq_len; VALUE with characters outside [A-Za-z0-9._+-] turned into\n"
    "'_'); a run's directory is OUT_DIR/NAME. Every run's config is validated before any runs:\n"
    "an unknown key or an impossible combination exits 2 naming the variant and the key.\n"
    "\n"
    "Each run is a child process `longctx train BASE --set ...` (this executable) whose output\n"
    "goes to RUN_DIR/train.log; a line per run shows its progress. A failing run is marked\n"
    "failed and the sweep goes on. Rerunning skips a run (\"cached\") whose config.yaml equals\n"
    "the config the sweep gives it and that finished (summary.json says so, or metrics.jsonl\n"
    "holds the last step); a changed config reruns it.\n"
    "\n"
    "  --mpirun \"ARGS\"  run each as `mpirun ARGS longctx train ...` (ARGS split on spaces),\n"
    "                   e.g. --mpirun \"-np 4\"; as root add --allow-run-as-root yourself\n"
    "  --only NAMES     run only these variants or runs (comma-separated); the others are\n"
    "                   reported as they are on disk (cached, or not run)\n"
    "  --dry-run        validate, then print each run's status and command; run nothing\n"
    "  --force          rerun finished runs too\n"
    "  --help           this text\n"
    "\n"
    "OUT_DIR/report.md: a table with one row per run: status (ok, cached, failed, not run), the\n"
    "overrides that set it apart, parameters, final train loss, validation perplexity and task\n"
    "scores (the last evaluation of eval.tasks), tokens/s (median of the logged steps after the\n"
    "first), peak memory, KV cache bytes per token over all layers, wall time; '–' where a value\n"
    "is not available. OUT_DIR/report.jsonl: the same, one JSON object per run. OUT_DIR/plots/:\n"
    "loss curves, tokens/s and peak memory against seq_len (with a seq_len grid), perplexity\n"
    "per position and passkey heatmaps (when evaluated). Plots need Python with matplotlib:\n"
    "$LONGCTX_PYTHON, else /usr/bin/python3, else python3; without one the report says why and\n"
    "the sweep still succeeds.\n"
    "\n"
    "Exit codes: 0 every run finished, 1 a run failed, 2 a bad sweep file, config or usage.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  throw ConfigError(str(msg, "\n", kSweepHelp));
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep))
    if (!part.empty()) out.push_back(part);
  return out;
}

std::vector<std::string> split_spaces(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

}  // namespace

int sweep_main(const std::vector<std::string>& args) {
  SweepOptions opt;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* flag) -> std::string {
      const std::string prefix = std::string(flag) + "=";
      if (a.rfind(prefix, 0) == 0) return a.substr(prefix.size());
      if (i + 1 >= args.size()) usage_error(str(flag, " needs a value"));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kSweepHelp, stdout);
      return 0;
    } else if (a == "--mpirun" || a.rfind("--mpirun=", 0) == 0) {
      opt.mpirun = split_spaces(value("--mpirun"));
      if (opt.mpirun.empty())
        usage_error("--mpirun needs the launcher's arguments, e.g. \"-np 4\"");
    } else if (a == "--only" || a.rfind("--only=", 0) == 0) {
      opt.only = split(value("--only"), ',');
      if (opt.only.empty()) usage_error("--only needs variant or run names, comma-separated");
    } else if (a == "--dry-run") {
      opt.dry_run = true;
    } else if (a == "--force") {
      opt.force = true;
    } else if (!a.empty() && a[0] == '-') {
      usage_error(str("unknown option '", a, "' for sweep"));
    } else if (opt.file.empty()) {
      opt.file = a;
    } else {
      usage_error(str("unexpected argument '", a, "' (one sweep FILE)"));
    }
  }
  if (opt.file.empty()) usage_error("sweep needs a sweep FILE");
  if (MpiEnv::size() > 1)
    throw ConfigError(
        "run `longctx sweep` as one process, not under mpirun or srun: it starts "
        "each run itself (use --mpirun \"ARGS\" for runs of many processes)");
  return run_sweep(opt);
}

}  // namespace longctx
