// The sweep's report: report.md (a table, one row per run, then failures and plots) and
// report.jsonl (the same rows as JSON objects, one per line, for tools/plot.py and scripts).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "sweep/run_record.h"
#include "sweep/sweep.h"

namespace longctx {

struct ReportRow {
  std::string name, variant, dir;
  std::string status;   // ok | cached | failed | not run (left out by --only)
  Overrides distinct;   // what sets the run apart (the variant's and the grid point's keys)
  int seq_len = 0;      // data.seq_len of its config
  int n_layer = 0;      // model.n_layer: KV bytes per token over all layers
  std::string failure;  // failed: how ("exit 1: <last line of train.log>")
  RunRecord record;
};

// The plots tools/plot.py wrote (path relative to out_dir, what it shows), or why there are
// none.
struct PlotList {
  std::vector<std::pair<std::string, std::string>> files;
  std::string note;
};

std::string report_markdown(const SweepSpec& spec, const std::vector<ReportRow>& rows,
                            const PlotList& plots);
std::string report_jsonl(const std::vector<ReportRow>& rows);

}  // namespace longctx
