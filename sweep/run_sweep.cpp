#include "sweep/run_sweep.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/error.h"
#include "core/fs.h"
#include "sweep/launcher.h"
#include "sweep/report.h"
#include "sweep/sweep.h"
#include "trainer/run_dir.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> train_command(const SweepOptions& opt, const SweepSpec& spec,
                                       const SweepRun& run, const std::string& exe) {
  std::vector<std::string> cmd;
  if (!opt.mpirun.empty()) {
    cmd.push_back("mpirun");
    cmd.insert(cmd.end(), opt.mpirun.begin(), opt.mpirun.end());
  }
  cmd.insert(cmd.end(), {exe, "train", spec.base});
  for (const std::string& o : run.overrides) cmd.insert(cmd.end(), {"--set", o});
  return cmd;
}

// The command as a shell would take it back: arguments with special characters single-quoted.
std::string shell_line(const std::vector<std::string>& cmd) {
  std::string out;
  for (const std::string& a : cmd) {
    const bool plain = !a.empty() && a.find_first_not_of(
                                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
                                         "nopqrstuvwxyz0123456789._-+/=:,@%") == std::string::npos;
    std::string quoted = "'";
    for (const char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += (out.empty() ? "" : " ") + (plain ? a : quoted + "'");
  }
  return out;
}

bool selected(const SweepOptions& opt, const SweepRun& run) {
  if (opt.only.empty()) return true;
  for (const std::string& n : opt.only)
    if (n == run.variant || n == run.name) return true;
  return false;
}

void check_only(const SweepOptions& opt, const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  for (const std::string& n : opt.only) {
    bool known = false;
    for (const SweepRun& r : runs) known |= n == r.variant || n == r.name;
    if (known) continue;
    std::string variants;
    for (const auto& [name, o] : spec.variants) variants += (variants.empty() ? "" : ", ") + name;
    throw ConfigError(str("--only: '", n, "' is neither a variant nor a run of '", spec.path,
                          "'; variants: ", variants));
  }
}

// A fresh run must not be mistaken for a finished one by what an earlier launch left behind,
// and the trainer refuses a directory that holds a run: a launch that does not resume starts
// from a cleared directory. A run that resumes keeps its history (the trainer continues it).
void clear_previous(const SweepRun& run, const Config& cfg) {
  std::error_code ec;
  fs::remove(run.dir + "/summary.json", ec);
  fs::remove(run.dir + "/launch.json", ec);
  if (cfg.checkpoint.resume == "none") clear_run_dir(run.dir);
}

void write_launch(const SweepRun& run, const std::vector<std::string>& cmd, int code,
                  double wall_s) {
  nlohmann::ordered_json j;
  j["command"] = cmd;
  j["exit_code"] = code;
  j["wall_s"] = wall_s;
  write_file_atomic(run.dir + "/launch.json", j.dump(2) + "\n");
}

// Why a run that was launched did not finish: "exit 1", and what its log ends with.
std::pair<std::string, std::string> why_failed(int code, const RunRecord& rec, const Config& cfg,
                                               const SweepRun& run) {
  if (code != 0) return {str("exit ", code), last_line(run.dir + "/train.log")};
  return {"exit 0", str("stopped before the last step (metrics.jsonl ends at step ",
                        rec.last_step ? std::to_string(*rec.last_step) : "none", " of ",
                        cfg.train.steps, ")")};
}

}  // namespace

bool run_is_cached(const std::string& dir, const Config& cfg) {
  std::error_code ec;
  if (!fs::is_regular_file(dir + "/config.yaml", ec)) return false;
  if (read_file(dir + "/config.yaml") != cfg.yaml) return false;
  return run_finished(read_run_record(dir), cfg.train.steps);
}

int run_sweep(const SweepOptions& opt) {
  const SweepSpec spec = load_sweep(opt.file);
  const std::vector<SweepRun> runs = expand_sweep(spec);
  const std::vector<Config> configs = validate_sweep(spec, runs);
  check_only(opt, spec, runs);
  const std::string exe = self_executable();

  std::vector<ReportRow> rows(runs.size());
  std::vector<bool> todo(runs.size());
  int to_run = 0, cached = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    ReportRow& row = rows[i];
    row.name = runs[i].name;
    row.variant = runs[i].variant;
    row.dir = runs[i].dir;
    row.distinct = runs[i].distinct;
    row.seq_len = configs[i].data.seq_len;
    row.n_layer = configs[i].model.n_layer;
    const bool done = run_is_cached(runs[i].dir, configs[i]);
    todo[i] = selected(opt, runs[i]) && (opt.force || !done);
    row.status = todo[i] ? "" : done ? "cached" : "not run";
    to_run += todo[i];
    cached += row.status == "cached";
  }
  std::printf(
      "sweep %s: %zu runs under %s (%d to run, %d cached); each run's output goes to "
      "RUN_DIR/train.log\n",
      spec.path.c_str(), runs.size(), spec.out_dir.c_str(), to_run, cached);

  if (opt.dry_run) {
    for (size_t i = 0; i < runs.size(); ++i) {
      std::printf("[%zu/%zu] %s: %s\n", i + 1, runs.size(), runs[i].name.c_str(),
                  todo[i] ? "would run" : rows[i].status.c_str());
      if (todo[i])
        std::printf("    %s\n", shell_line(train_command(opt, spec, runs[i], exe)).c_str());
    }
    return 0;
  }

  int failed = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    const SweepRun& run = runs[i];
    ReportRow& row = rows[i];
    std::printf("[%zu/%zu] %s ... ", i + 1, runs.size(), run.name.c_str());
    if (!todo[i]) {
      // A run left out by --only may hold results of another config: show none of them.
      if (row.status == "cached") row.record = read_run_record(run.dir);
      std::printf("%s\n", row.status.c_str());
      std::fflush(stdout);
      continue;
    }
    std::fflush(stdout);
    make_dirs(run.dir);
    clear_previous(run, configs[i]);
    const std::vector<std::string> cmd = train_command(opt, spec, run, exe);
    const auto t0 = std::chrono::steady_clock::now();
    const int code = run_logged(cmd, run.dir + "/train.log");
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_launch(run, cmd, code, wall);
    row.record = read_run_record(run.dir);
    if (code == 0 && run_finished(row.record, configs[i].train.steps)) {
      row.status = "ok";
      std::printf("done in %.0f s", wall);
      if (row.record.final_loss) std::printf(", loss %.4f", *row.record.final_loss);
      std::printf("\n");
    } else {
      const auto [status, detail] = why_failed(code, row.record, configs[i], run);
      row.status = "failed";
      row.failure = detail.empty() ? status : status + ": " + detail;
      ++failed;
      std::printf("FAILED (%s)%s\n", status.c_str(), detail.empty() ? "" : (": " + detail).c_str());
    }
    std::fflush(stdout);
  }

  make_dirs(spec.out_dir);
  write_file_atomic(spec.out_dir + "/report.jsonl", report_jsonl(rows));
  const PlotList plots = make_plots(spec.out_dir);
  write_file_atomic(spec.out_dir + "/report.md", report_markdown(spec, rows, plots));
  std::printf("report: %s/report.md, %s/report.jsonl\n", spec.out_dir.c_str(),
              spec.out_dir.c_str());
  if (!plots.files.empty())
    std::printf("plots: %zu in %s/plots\n", plots.files.size(), spec.out_dir.c_str());
  if (!plots.note.empty()) std::printf("%s\n", plots.note.c_str());
  if (failed) std::printf("%d of %d runs failed (see the report)\n", failed, to_run);
  return failed ? 1 : 0;
}

}  // namespace longctx
