// The training loop: batches from the data source, forward/backward over grad_accum
// micro-batches, global-norm clipping, AdamW with the LR schedule.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/config.h"
#include "data/synthetic.h"
#include "model/transformer.h"
#include "trainer/adamw.h"

namespace longctx {

struct StepStats {
  int step = 0;          // 0-based index of the step just taken
  double loss = 0;       // mean over every target token of the step's batch
  double grad_norm = 0;  // before clipping
  double lr = 0;
  double step_ms = 0;
  int64_t tokens = 0;    // input tokens processed by this step
};

class Trainer {
 public:
  explicit Trainer(const Config& cfg);
  StepStats step();  // takes the next optimizer step
  int next_step() const { return step_; }
  Transformer<float>& model() { return *model_; }
  const Config& config() const { return cfg_; }

 private:
  Config cfg_;
  std::unique_ptr<Transformer<float>> model_;
  std::unique_ptr<AdamW<float>> opt_;
  SyntheticData data_;
  std::vector<int32_t> inputs_, targets_;  // [grad_accum, B, T]
  int step_ = 0;
};

// A whole run: run directory with config.yaml and metrics.jsonl, progress on stdout, a
// summary at the end. Returns the process exit code.
int run_training(const Config& cfg);

}  // namespace longctx
