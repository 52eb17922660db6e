// What a run directory says about its run, read from the files the trainer and the sweep
// leave there:
//   metrics.jsonl  train lines {"step", "loss", "tokens_per_s", "peak_rss_mb", ...} and eval
//                  lines {"step", "eval": {TASK: {...}, ...}} (trainer)
//   summary.json   {"finished": true, "params", "non_embedding_params", "wall_s", ...} at the end
//                  of a completed run (trainer)
//   launch.json    {"command": [...], "exit_code", "wall_s"} of the last launch (sweep)
// The numbers of the report are computed from metrics.jsonl; summary.json adds what metrics do
// not hold (parameter counts, the trainer's wall time).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace longctx {

struct RunRecord {
  // metrics.jsonl
  int train_lines = 0;
  std::optional<int64_t> last_step;    // of the last train line (steps count from 1)
  std::optional<double> final_loss;    // of the last train line
  std::optional<double> tokens_per_s;  // median of train lines after the first (warm-up);
                                       // the first one's when it is the only one
  std::optional<double> peak_rss_mb;   // max over all lines
  std::optional<double> peak_gpu_mb;   // max over all lines
  std::optional<double> val_ppl;       // eval.ppl.ppl of the last eval line holding ppl
  std::optional<double> kv_bytes_per_token_per_layer;  // eval.kvcache, likewise
  // ("passkey", "accuracy"), ("classify", "macro_f1"), ...: each task's accuracy and macro_f1,
  // from the last eval line holding that task, in the order tasks first appear.
  std::vector<std::pair<std::pair<std::string, std::string>, double>> scores;
  std::vector<std::string> problems;  // lines that are not JSON objects, and the like

  // summary.json
  bool has_summary = false;
  bool summary_finished = false;
  std::optional<int64_t> params, non_embedding_params;
  std::optional<double> summary_wall_s;

  // launch.json
  std::optional<int> exit_code;
  std::optional<double> launch_wall_s;

  // The trainer's wall time when it reported one, else the sweep's measure of the process.
  std::optional<double> wall_s() const { return summary_wall_s ? summary_wall_s : launch_wall_s; }
};

// Reads whatever of the three files exists; a missing file leaves its fields empty.
RunRecord read_run_record(const std::string& dir);

// Whether the run completed train_steps: summary.json's "finished" when it is there, else a
// a train line for the last step (step train_steps, counted from 1) in metrics.jsonl, unless launch.json
// records a non-zero exit.
bool run_finished(const RunRecord& r, int train_steps);

// The median of `v` (the mean of the middle two for an even count); v must not be empty.
double median(std::vector<double> v);

}  // namespace longctx
