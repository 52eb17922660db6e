// The run directory (run.out_dir) as one run's history: a new run never writes into a directory
// that holds another run unless told to replace it, and a resumed run never keeps checkpoints
// or metrics from a continuation it abandons.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace longctx {

// What a directory holds of a longctx run: the files a run writes, and its checkpoints.
struct RunDirContents {
  std::vector<std::string> files;  // present among config.yaml, metrics.jsonl, summary.json
  std::vector<std::pair<int64_t, std::string>> checkpoints;  // by step, newest first

  bool holds_run() const { return !files.empty() || !checkpoints.empty(); }
  // "config.yaml, metrics.jsonl and 3 checkpoints (steps 50 to 150)"
  std::string describe() const;
};

RunDirContents inspect_run_dir(const std::string& dir);

// Removes what a run writes into `dir` (config.yaml, metrics.jsonl, summary.json, and in
// checkpoints/ the step_*.h5 files, `latest` and temporaries), never anything else.
void clear_run_dir(const std::string& dir);

// Removes the temporaries (NAME.tmp.PID) that a process killed while writing left in `dir` and
// `dir`/checkpoints; returns their names. Only one run writes a run directory at a time.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

// Rank 0, before a run writes anything: decides whether `cfg` may train into run.out_dir, and
// makes the directory hold this run's history alone. `resume_path` / `resume_step` name the
// checkpoint the run continues from (empty / -1 for a fresh start). Throws ConfigError, leaving
// the directory untouched, for
//   - a fresh start (checkpoint.resume: none) into a directory that holds a run, unless
//     run.overwrite or `force` (train --force), which clear it first;
//   - a resume from a file outside the directory into one that holds a run (the same rule);
//   - a resume from one of the directory's own checkpoints when newer whole ones exist (they
//     would be overwritten by a different continuation; delete them to roll back).
// Otherwise prints what it changes: checkpoints newer than the resume point that could not be
// read are set aside as NAME.damaged; an `auto` resume that found no checkpoint replaces the
// files of the earlier attempt; `latest` is made to name the checkpoint resumed from.
void claim_run_dir(const Config& cfg, bool force, const std::string& resume_path,
                   int64_t resume_step);

}  // namespace longctx
