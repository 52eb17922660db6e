// What a run reports: metrics.jsonl (one JSON object per logged step) and the progress line.
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "trainer/trainer.h"

namespace longctx {

class MetricsLog {
 public:
  // A new run truncates the file. A resumed one (resume_step >= 0: the steps its checkpoint
  // had taken) keeps the lines of steps up to resume_step, dropping any the interrupted run
  // logged after its checkpoint, and appends: the file then reads as one run.
  explicit MetricsLog(const std::string& path, int64_t resume_step = -1);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  // {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_ms", "peak_rss_mb",
  //  "peak_gpu_mb" (GPU runs), "data_wait_ms", "comm_bytes", "comm_ms"}
  void write_step(const StepStats& s, int64_t tokens_total, double tokens_per_s,
                  double peak_rss_mb);
  // {"step": step, "eval": {TASK: result, ...}}: evaluation after step `step` (from 1).
  void write_eval(int64_t step, const nlohmann::ordered_json& results);

 private:
  void append(const std::string& json);

  std::string path_;
  std::FILE* f_ = nullptr;
};

// "step   40/200 | loss 2.3456 | lr 3.00e-04 | gnorm 0.53 | 12.3k tok/s | 85 ms/step | ETA 13s"
class Progress {
 public:
  // first_step: where this process started (a resumed run's ETA counts only its own steps).
  explicit Progress(int total_steps, int first_step = 0) : total_(total_steps), first_(first_step) {}
  void print(const StepStats& s, double tokens_per_s, double elapsed_s) const;

 private:
  int total_, first_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace longctx
