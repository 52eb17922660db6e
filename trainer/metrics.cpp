#include "trainer/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace longctx {

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
  if (resume_step >= 0 && std::filesystem::exists(path)) {
    std::istringstream in(read_file(path));
    std::string kept;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= resume_step)
        kept += line + "\n";
    }
    write_file_atomic(path, kept);
  }
  f_ = std::fopen(path.c_str(), resume_step >= 0 ? "a" : "w");
  if (!f_) throw Error(str("cannot write '", path, "': ", std::strerror(errno)));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write_step(const StepStats& s, int64_t tokens_total, double tokens_per_s,
                            double peak_rss_mb) {
  nlohmann::json j;
  j["step"] = s.step;
  j["loss"] = s.loss;
  j["lr"] = s.lr;
  j["grad_norm"] = s.grad_norm;
  j["tokens"] = tokens_total;
  j["tokens_per_s"] = tokens_per_s;
  j["step_ms"] = s.step_ms;
  j["peak_rss_mb"] = peak_rss_mb;
  if (s.peak_gpu_mb > 0) j["peak_gpu_mb"] = s.peak_gpu_mb;
  j["data_wait_ms"] = s.data_wait_ms;
  j["comm_bytes"] = s.comm_bytes;
  j["comm_ms"] = s.comm_ms;
  append(j.dump());
}

void MetricsLog::write_eval(int64_t step, const nlohmann::ordered_json& results) {
  nlohmann::ordered_json j;
  j["step"] = step;
  j["eval"] = results;
  append(j.dump());
}

// One line per write and a flush: a killed run leaves only whole lines behind.
void MetricsLog::append(const std::string& json) {
  const std::string line = json + "\n";
  if (std::fputs(line.c_str(), f_) < 0 || std::fflush(f_) != 0)
    throw Error(str("cannot append to '", path_, "': ", std::strerror(errno)));
}

std::string format_duration(double s) {
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

void Progress::print(const StepStats& s, double tps, double elapsed) const {
  const int done = s.step, here = done - first_;
  const double eta = here > 0 ? elapsed / here * (total_ - done) : 0;
  const int width = static_cast<int>(std::to_string(total_).size());
  std::printf("step %*d/%d | loss %.4f | lr %.2e | gnorm %.3f | %.1fk tok/s | %.0f ms/step | ETA %s\n",
              width, done, total_, s.loss, s.lr, s.grad_norm, tps / 1000.0, s.step_ms,
              format_duration(eta).c_str());
  std::fflush(stdout);
}

}  // namespace longctx
