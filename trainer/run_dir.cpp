#include "trainer/run_dir.h"

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/fs.h"
#include "trainer/checkpoint.h"

namespace longctx {

namespace fs = std::filesystem;

namespace {

const char* const kRunFiles[] = {"config.yaml", "metrics.jsonl", "summary.json"};

// NAME.tmp.PID, as write_file_atomic and the checkpoint writer name their temporaries.
bool is_temporary(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0 || at + 5 == name.size()) return false;
  return name.find_first_not_of("0123456789", at + 5) == std::string::npos;
}

std::string names(const std::vector<std::pair<int64_t, std::string>>& list) {
  std::string out;
  for (const auto& [step, path] : list)
    out += (out.empty() ? "" : ", ") + fs::path(path).filename().string();
  return out;
}

void remove_file(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) throw Error(str("cannot remove '", path, "': ", ec.message()));
}

}  // namespace

std::string RunDirContents::describe() const {
  std::vector<std::string> parts = files;
  if (!checkpoints.empty()) {
    const int64_t lo = checkpoints.back().first, hi = checkpoints.front().first;
    parts.push_back(checkpoints.size() == 1
                        ? str("a checkpoint at step ", hi)
                        : str(checkpoints.size(), " checkpoints (steps ", lo, " to ", hi, ")"));
  }
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i)
    out += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
  return out;
}

RunDirContents inspect_run_dir(const std::string& dir) {
  RunDirContents c;
  std::error_code ec;
  for (const char* f : kRunFiles)
    if (fs::exists(dir + "/" + f, ec)) c.files.push_back(f);
  c.checkpoints = list_checkpoints(dir + "/checkpoints");
  return c;
}

void clear_run_dir(const std::string& dir) {
  for (const char* f : kRunFiles) remove_file(dir + "/" + f);
  const std::string ckpt = dir + "/checkpoints";
  for (const auto& [step, path] : list_checkpoints(ckpt)) remove_file(path);
  remove_file(ckpt + "/latest");
  remove_stale_temporaries(dir);
  std::error_code ec;
  if (fs::is_directory(ckpt, ec) && fs::is_empty(ckpt, ec)) fs::remove(ckpt, ec);
}

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  for (const std::string& d : {dir, dir + "/checkpoints"}) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      const std::string name = e.path().filename().string();
      if (!is_temporary(name) || !e.is_regular_file(ec)) continue;
      remove_file(e.path().string());
      removed.push_back(e.path().string());
    }
  }
  return removed;
}

void claim_run_dir(const Config& cfg, bool force, const std::string& resume_path,
                   int64_t resume_step) {
  const std::string& dir = cfg.run.out_dir;
  const RunDirContents here = inspect_run_dir(dir);
  const std::string ckpt_dir = checkpoint_dir(cfg);
  std::error_code ec;
  const bool own_checkpoint =
      !resume_path.empty() && fs::equivalent(fs::path(resume_path).parent_path(), ckpt_dir, ec);

  if (resume_path.empty() || !own_checkpoint) {
    if (here.holds_run()) {
      if (!cfg.run.overwrite && !force && cfg.checkpoint.resume != "auto") {
        const std::string what =
            resume_path.empty() ? "a new run" : str("a run resumed from '", resume_path, "'");
        throw ConfigError(str(
            "run directory '", dir, "' already holds a run (", here.describe(), "); ", what,
            " would mix its history with that one. Continue that run with --set "
            "checkpoint.resume=auto, replace it with --force (run.overwrite: true), or choose "
            "another run.out_dir"));
      }
      if (cfg.checkpoint.resume == "auto")  // auto found nothing: replace the earlier attempt
        std::printf("  no checkpoint in %s: starting at step 0 and replacing the earlier "
                    "attempt's %s\n", ckpt_dir.c_str(), here.describe().c_str());
      else
        std::printf("  clearing %s (--force / run.overwrite): %s\n", dir.c_str(),
                    here.describe().c_str());
      clear_run_dir(dir);
    }
  } else {
    std::vector<std::pair<int64_t, std::string>> newer;
    for (const auto& c : here.checkpoints)
      if (c.first > resume_step) newer.push_back(c);
    if (!newer.empty()) {
      if (cfg.checkpoint.resume != "auto")
        throw ConfigError(str(
            "resuming from '", resume_path, "' (step ", resume_step, ") would continue run "
            "directory '", dir, "' along another path than its newer checkpoints (",
            names(newer), "); delete those to roll back to step ", resume_step,
            ", or resume into another run.out_dir"));
      // auto tried the newer ones first: they could not be read. Kept for a look, out of the way.
      for (const auto& [step, path] : newer) {
        fs::rename(path, path + ".damaged", ec);
        if (ec) throw Error(str("cannot rename '", path, "' to '", path, ".damaged': ", ec.message()));
        std::printf("  set aside %s.damaged (newer than the checkpoint resumed from)\n",
                    path.c_str());
      }
    }
    write_file_atomic(ckpt_dir + "/latest", fs::path(resume_path).filename().string() + "\n");
  }
  for (const std::string& t : remove_stale_temporaries(dir))
    std::printf("  removed %s (left by a process killed while writing it)\n", t.c_str());
}

}  // namespace longctx
