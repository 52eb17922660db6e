#include "trainer/metrics.h"

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace longctx {

MetricsLog::MetricsLog(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "w")) {
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
  j["data_wait_ms"] = s.data_wait_ms;
  j["comm_bytes"] = s.comm_bytes;
  j["comm_ms"] = s.comm_ms;
  const std::string line = j.dump() + "\n";
  // One line per write and a flush: a killed run leaves only whole lines behind.
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
  const int done = s.step + 1;
  const double eta = done > 0 ? elapsed / done * (total_ - done) : 0;
  const int width = static_cast<int>(std::to_string(total_).size());
  std::printf("step %*d/%d | loss %.4f | lr %.2e | gnorm %.3f | %.1fk tok/s | %.0f ms/step | ETA %s\n",
              width, done, total_, s.loss, s.lr, s.grad_norm, tps / 1000.0, s.step_ms,
              format_duration(eta).c_str());
  std::fflush(stdout);
}

}  // namespace longctx
