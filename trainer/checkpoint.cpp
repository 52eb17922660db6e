#include "trainer/checkpoint.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/fs.h"

namespace longctx {

namespace fs = std::filesystem;

std::string checkpoint_dir(const Config& cfg) { return cfg.run.out_dir + "/checkpoints"; }

std::string checkpoint_path(const Config& cfg, int64_t step) {
  char name[40];
  std::snprintf(name, sizeof name, "step_%08lld.h5", static_cast<long long>(step));
  return checkpoint_dir(cfg) + "/" + name;
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() < 9 || name.rfind("step_", 0) != 0 || name.substr(name.size() - 3) != ".h5")
      continue;
    const std::string digits = name.substr(5, name.size() - 8);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return found;
}

std::string resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const std::string& dir : {path + "/checkpoints", path}) {
      const auto found = list_checkpoints(dir);
      if (!found.empty()) return found.front().second;
    }
    throw Error(str("'", path, "' is a directory without checkpoints (looked for step_*.h5 in it ",
                    "and in its checkpoints/)"));
  }
  // checkpoints/latest: a one-line file naming the newest checkpoint beside it.
  if (fs::path(path).filename() == "latest" && fs::is_regular_file(path, ec) &&
      fs::file_size(path, ec) < 256) {
    std::string name = read_file(path);
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
    if (name.empty() || name.find('/') != std::string::npos)
      throw Error(str("'", path, "' should name a checkpoint file beside it, but holds '", name,
                      "'"));
    const std::string target = (fs::path(path).parent_path() / name).string();
    if (!fs::is_regular_file(target, ec))
      throw Error(str("'", path, "' names '", name, "', which does not exist"));
    return target;
  }
  return path;
}

std::optional<ResumePoint> find_resume_point(const Config& cfg) {
  const std::string& r = cfg.checkpoint.resume;
  if (r == "none") return std::nullopt;
  if (r != "auto") {
    std::error_code ec;
    if (!fs::is_regular_file(r, ec))
      throw ConfigError(str("'checkpoint.resume' must be none, auto or a checkpoint file; '", r,
                            "' is not a file"));
    return ResumePoint{r, read_checkpoint(r)};
  }
  std::vector<std::pair<std::string, std::string>> refused;  // path, why
  for (const auto& [step, path] : list_checkpoints(checkpoint_dir(cfg))) {
    try {
      ResumePoint rp{path, read_checkpoint(path)};
      for (const auto& [p, why] : refused)
        std::fprintf(stderr, "warning: skipping checkpoint '%s': %s\n", p.c_str(), why.c_str());
      return rp;
    } catch (const Error& e) {
      refused.emplace_back(path, e.what());
    }
  }
  // Starting over would overwrite the damaged files and the run's metrics: a person decides.
  if (!refused.empty()) {
    std::string msg = str("checkpoint.resume: auto found ", refused.size(), " checkpoint",
                          refused.size() > 1 ? "s" : "", " in '", checkpoint_dir(cfg),
                          "' and none reads back whole:");
    for (const auto& [p, why] : refused) msg += str("\n  ", p, ": ", why);
    throw Error(msg + "\n(resume from a good copy with --set checkpoint.resume=PATH, or start "
                      "over with --set checkpoint.resume=none --force)");
  }
  return std::nullopt;
}

namespace {

// Every scalar of a YAML tree as "a.b.c" -> its text (sequences in flow style).
void flatten(const YAML::Node& n, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n)
      flatten(kv.second, prefix.empty() ? kv.first.as<std::string>()
                                        : prefix + "." + kv.first.as<std::string>(), out);
    return;
  }
  YAML::Emitter e;
  e << YAML::Flow << n;
  out[prefix] = e.c_str();
}

// What a resume may change: nothing about the model, its objective or the order of the data.
bool harmless(const std::string& key) {
  for (const char* p : {"train.", "log.", "checkpoint.", "parallel.", "eval."})
    if (key.rfind(p, 0) == 0) return true;
  // The device changes where the same model trains: checkpoints move between CPU and GPU.
  return key == "run.name" || key == "run.out_dir" || key == "run.device" ||
         key == "run.overwrite" ||
         key == "data.prefetch" || key == "data.val";
}

}  // namespace

std::vector<std::string> check_resume_config(const std::string& checkpoint_yaml,
                                             const std::string& run_yaml,
                                             const std::string& path) {
  std::map<std::string, std::string> was, now;
  flatten(YAML::Load(checkpoint_yaml), "", was);
  flatten(YAML::Load(run_yaml), "", now);
  std::vector<std::string> accepted, refused;
  auto value = [](const std::map<std::string, std::string>& m, const std::string& k) {
    auto it = m.find(k);
    return it == m.end() ? std::string("(unset)") : it->second;
  };
  std::map<std::string, int> keys;
  for (const auto& [k, v] : was) keys[k];
  for (const auto& [k, v] : now) keys[k];
  for (const auto& [k, unused] : keys) {
    const std::string a = value(was, k), b = value(now, k);
    if (a == b) continue;
    (harmless(k) ? accepted : refused).push_back(k + ": " + a + " -> " + b);
  }
  if (!refused.empty()) {
    std::string msg = str("cannot resume from '", path, "': the config changes the model or the "
                          "data order:");
    for (const std::string& r : refused) msg += "\n  " + r;
    msg += "\n(start a new run directory, or resume with the checkpoint's values)";
    throw ConfigError(msg);
  }
  return accepted;
}

namespace {

void broadcast_string(Comm& comm, std::string& s, int root) {
  int64_t n = int64_t(s.size());
  comm.broadcast(&n, 1, root);
  s.resize(size_t(n));
  if (n > 0) comm.broadcast(reinterpret_cast<uint8_t*>(s.data()), n, DType::u8, root);
}

void broadcast_floats(Comm& comm, std::vector<float>& v, int root) {
  int64_t n = int64_t(v.size());
  comm.broadcast(&n, 1, root);
  v.resize(size_t(n));
  if (n > 0) comm.broadcast(v.data(), n, root);
}

}  // namespace

std::optional<ResumePoint> broadcast_resume_point(Comm& comm, std::optional<ResumePoint> rp,
                                                  int root) {
  if (comm.size() == 1) return rp;
  int64_t found = rp.has_value();
  comm.broadcast(&found, 1, root);
  if (!found) return std::nullopt;
  if (!rp) rp.emplace();
  CheckpointState& s = rp->state;
  int64_t counters[2] = {s.step, s.tokens_seen};
  comm.broadcast(counters, 2, root);
  s.step = counters[0];
  s.tokens_seen = counters[1];
  for (std::string* t : {&rp->path, &s.config_yaml, &s.loader_json, &s.rng_json})
    broadcast_string(comm, *t, root);
  for (std::vector<float>* v : {&s.values, &s.m, &s.v}) broadcast_floats(comm, *v, root);
  return rp;  // infos stay with the root: every rank has its own store's
}

CheckpointWriter::CheckpointWriter(std::string dir, int keep) : dir_(std::move(dir)), keep_(keep) {}

CheckpointWriter::~CheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
}

void CheckpointWriter::reserve(int64_t n) {
  for (std::vector<float>* b : {&spare_.values, &spare_.m, &spare_.v}) b->assign(size_t(n), 0.0f);
}

void CheckpointWriter::wait() {
  if (thread_.joinable()) {
    thread_.join();
    last_seconds_ = done_seconds_;  // read only after the join: no race with the thread
    last_bytes_ = done_bytes_;
    spare_ = std::move(done_state_);
  }
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void CheckpointWriter::write(CheckpointState state, const std::string& path) {
  wait();
  make_dirs(dir_);
  thread_ = std::thread([this, s = std::move(state), path]() mutable {
    try {
      const auto t0 = std::chrono::steady_clock::now();
      write_checkpoint(path, s);
      done_seconds_ =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      done_bytes_ = int64_t(s.values.size() + s.m.size() + s.v.size()) * 4;
      finish(path);
    } catch (...) {
      error_ = std::current_exception();
    }
    done_state_ = std::move(s);
  });
}

void CheckpointWriter::finish(const std::string& path) {
  write_file_atomic(dir_ + "/latest", fs::path(path).filename().string() + "\n");
  const auto all = list_checkpoints(dir_);
  for (size_t i = size_t(keep_); i < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i].second, ec);
  }
}

}  // namespace longctx
