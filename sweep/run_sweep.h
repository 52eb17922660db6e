// Running a sweep: validate every run, run the unfinished ones one after another as child
// processes, then write report.jsonl, the plots and report.md into the sweep's out_dir.
#pragma once
#include <string>
#include <vector>

#include "core/config.h"

namespace longctx {

struct SweepOptions {
  std::string file;                 // the sweep file
  std::vector<std::string> mpirun;  // non-empty: run each as `mpirun ARGS... longctx train ...`
  std::vector<std::string> only;    // variant or run names; empty: all
  bool dry_run = false;             // print the plan, run and write nothing
  bool force = false;               // rerun finished runs too
};

// Returns the exit code: 0 when every selected run finished, 1 when any failed. Throws
// ConfigError for a bad sweep file, a run with an invalid config, or an unknown --only name.
int run_sweep(const SweepOptions& opt);

// Whether the run in `dir` is done for `cfg`: it finished (see run_finished) and its
// config.yaml is the text of cfg.yaml, so that a changed config reruns it.
bool run_is_cached(const std::string& dir, const Config& cfg);

}  // namespace longctx
