#include "sweep/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "trainer/metrics.h"

namespace longctx {
namespace {

using ojson = nlohmann::ordered_json;

const char* kMissing = "–";

template <class T>
std::string fmt(const char* format, const std::optional<T>& v) {
  if (!v) return kMissing;
  char buf[64];
  std::snprintf(buf, sizeof buf, format, static_cast<double>(*v));
  return buf;
}

// 3300000 -> "3.30M", 12345 -> "12.3k".
std::string count(const std::optional<int64_t>& v) {
  if (!v) return kMissing;
  const double x = double(*v);
  if (x >= 1e9) return fmt("%.2fG", std::optional<double>(x / 1e9));
  if (x >= 1e6) return fmt("%.2fM", std::optional<double>(x / 1e6));
  if (x >= 1e3) return fmt("%.1fk", std::optional<double>(x / 1e3));
  return std::to_string(*v);
}

// "0.4s", "42.0s" below a minute (tiny runs still read), then "3m05s", "1h02m".
std::string duration(const std::optional<double>& s) {
  if (!s) return kMissing;
  return *s < 60 ? fmt("%.1fs", s) : format_duration(*s);
}

std::optional<double> kv_all_layers(const ReportRow& r) {
  const auto& per_layer = r.record.kv_bytes_per_token_per_layer;
  if (!per_layer) return std::nullopt;
  return *per_layer * r.n_layer;
}

std::optional<double> score(const RunRecord& rec, const std::pair<std::string, std::string>& id) {
  for (const auto& [k, v] : rec.scores)
    if (k == id) return v;
  return std::nullopt;
}

// A table cell: '|' would end the cell, a newline the row.
std::string cell(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out.empty() ? kMissing : out;
}

std::string joined(const Overrides& o) {
  std::string out;
  for (const std::string& s : o) out += (out.empty() ? "" : " ") + s;
  return out;
}

ojson optional_json(const std::optional<double>& v) { return v ? ojson(*v) : ojson(nullptr); }
ojson optional_json(const std::optional<int64_t>& v) { return v ? ojson(*v) : ojson(nullptr); }

}  // namespace

std::string report_markdown(const SweepSpec& spec, const std::vector<ReportRow>& rows,
                            const PlotList& plots) {
  // Score columns: every (task, metric) some run reports, in order of first appearance.
  std::vector<std::pair<std::string, std::string>> score_ids;
  bool gpu = false;
  for (const ReportRow& r : rows) {
    gpu |= r.record.peak_gpu_mb.has_value();
    for (const auto& [id, v] : r.record.scores)
      if (std::find(score_ids.begin(), score_ids.end(), id) == score_ids.end())
        score_ids.push_back(id);
  }
  int ok = 0, cached = 0, failed = 0, not_run = 0;
  for (const ReportRow& r : rows) {
    ok += r.status == "ok";
    cached += r.status == "cached";
    failed += r.status == "failed";
    not_run += r.status == "not run";
  }

  std::string md = str("# Sweep report: ", spec.path, "\n\n");
  md += str("Base config `", spec.base, "`");
  if (!spec.overrides.empty()) md += str(", for every run `", joined(spec.overrides), "`");
  md += str(". Runs under `", spec.out_dir, "`.\n\n");
  md += str(rows.size(), " runs: ", ok, " ok, ", cached, " cached, ", failed, " failed");
  if (not_run) md += str(", ", not_run, " not run (left out by --only)");
  md += ".\n\n";

  md += "| run | status | overrides | params | final loss | val ppl |";
  for (const auto& [task, metric] : score_ids)
    md += str(" ", task, metric == "accuracy" ? " acc" : " F1", " |");
  md += " tokens/s | peak RSS MB |";
  if (gpu) md += " peak GPU MB |";
  md += " KV B/token (all layers) | wall |\n";
  md += "|---|---|---|---:|---:|---:|";
  for (size_t i = 0; i < score_ids.size(); ++i) md += "---:|";
  md += gpu ? "---:|---:|---:|---:|---:|\n" : "---:|---:|---:|---:|\n";

  for (const ReportRow& r : rows) {
    const RunRecord& rec = r.record;
    md += str("| ", cell(r.name), " | ", r.status, " | ", cell(joined(r.distinct)), " | ",
              count(rec.params), " | ", fmt("%.4f", rec.final_loss), " | ",
              fmt("%.3f", rec.val_ppl), " |");
    for (const auto& id : score_ids) md += str(" ", fmt("%.3f", score(rec, id)), " |");
    md += str(" ", fmt("%.0f", rec.tokens_per_s), " | ", fmt("%.0f", rec.peak_rss_mb), " |");
    if (gpu) md += str(" ", fmt("%.0f", rec.peak_gpu_mb), " |");
    md += str(" ", fmt("%.0f", kv_all_layers(r)), " | ", duration(rec.wall_s()), " |\n");
  }

  md +=
      "\nfinal loss: the last train line of metrics.jsonl. val ppl and the task scores "
      "(accuracy, F1 = macro F1): the last evaluation of each task. tokens/s: the median of "
      "the logged steps after the first (whose time includes warm-up). Peak memory: the "
      "largest value logged. KV B/token: eval.kvcache bytes per token per layer x "
      "model.n_layer. wall: the trainer's own time when it reports one, else the process's. "
      "params: from the run's summary.json. – : not available.\n";

  bool any_failed = false;
  for (const ReportRow& r : rows) any_failed |= !r.failure.empty() || !r.record.problems.empty();
  if (any_failed) {
    md += "\n## Failures and warnings\n\n";
    for (const ReportRow& r : rows) {
      if (!r.failure.empty())
        md += str("- ", r.name, ": ", r.failure, " (log: `", r.dir, "/train.log`)\n");
      for (const std::string& p : r.record.problems) md += str("- ", r.name, ": ", p, "\n");
    }
  }

  md += "\n## Plots\n\n";
  for (const auto& [file, what] : plots.files)
    md += str("- [", file, "](", file, "): ", what, "\n");
  if (!plots.note.empty()) md += plots.note + "\n";
  return md;
}

std::string report_jsonl(const std::vector<ReportRow>& rows) {
  std::string out;
  for (const ReportRow& r : rows) {
    const RunRecord& rec = r.record;
    ojson j;
    j["name"] = r.name;
    j["variant"] = r.variant;
    j["status"] = r.status;
    j["run_dir"] = std::filesystem::absolute(r.dir).lexically_normal().string();
    j["overrides"] = r.distinct;
    j["seq_len"] = r.seq_len;
    j["n_layer"] = r.n_layer;
    j["steps"] = rec.last_step ? ojson(*rec.last_step) : ojson(nullptr);
    j["params"] = optional_json(rec.params);
    j["non_embedding_params"] = optional_json(rec.non_embedding_params);
    j["final_loss"] = optional_json(rec.final_loss);
    j["val_ppl"] = optional_json(rec.val_ppl);
    ojson scores = ojson::object();
    for (const auto& [id, v] : rec.scores) scores[id.first][id.second] = v;
    j["scores"] = scores;
    j["tokens_per_s"] = optional_json(rec.tokens_per_s);
    j["peak_rss_mb"] = optional_json(rec.peak_rss_mb);
    j["peak_gpu_mb"] = optional_json(rec.peak_gpu_mb);
    j["kv_bytes_per_token_per_layer"] = optional_json(rec.kv_bytes_per_token_per_layer);
    j["kv_bytes_per_token"] = optional_json(kv_all_layers(r));
    j["wall_s"] = optional_json(rec.wall_s());
    j["exit_code"] = rec.exit_code ? ojson(*rec.exit_code) : ojson(nullptr);
    j["failure"] = r.failure.empty() ? ojson(nullptr) : ojson(r.failure);
    // A failure line copied from a log may hold bytes that are not UTF-8.
    out += j.dump(-1, ' ', false, ojson::error_handler_t::replace) + "\n";
  }
  return out;
}

}  // namespace longctx
