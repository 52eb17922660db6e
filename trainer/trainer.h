// The training loop: batches from the data source, forward/backward over grad_accum
// micro-batches, global-norm clipping, AdamW with the LR schedule.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/process_grid.h"
#include "data/loader.h"
#include "data/sample_source.h"
#include "model/gpu_model.h"
#include "model/transformer.h"
#include "trainer/checkpoint_file.h"
#include "trainer/data_parallel.h"

namespace longctx {

struct StepStats {
  int step = 0;          // number of the step just taken, from 1 (= steps taken after it)
  double loss = 0;       // mean over every target token of the step's batch
  double grad_norm = 0;  // before clipping
  double lr = 0;
  double step_ms = 0;
  int64_t tokens = 0;    // input tokens processed by this step
  double data_wait_ms = 0;  // time the step waited for its batch
  int64_t comm_bytes = 0;   // bytes this rank sent in collectives during the step
  double comm_ms = 0;       // time in collectives
  double peak_gpu_mb = 0;   // the GPU's peak memory use so far (0: training on the CPU)
};

class Dataset;

class Trainer {
 public:
  // One process (tests, a plain `longctx train`).
  explicit Trainer(const Config& cfg);
  // This rank of `grid` (which must outlive the trainer): data parallel over its replicas.
  Trainer(const Config& cfg, ProcessGrid& grid);
  ~Trainer();
  StepStats step();  // takes the next optimizer step
  int next_step() const { return step_; }
  int64_t tokens_seen() const { return tokens_seen_; }
  // Everything a checkpoint holds, whole on every rank (collective: ZeRO-1 gathers the moments).
  CheckpointState checkpoint_state();
  // The same into `s`, reusing its buffers (a reused buffer copies without page faults).
  void checkpoint_state(CheckpointState& s);
  // Continues from a checkpoint: parameters, moments, step, tokens seen and the loader's
  // position, on this run's grid (any dp × sp). Error naming a parameter whose name or shape
  // differs from the model's.
  void restore(const CheckpointState& s);
  // The host model: on the CPU the one that trains; with run.device: cuda a one-token copy that
  // gives the parameter layout, FLOP counts and, through host_params(), the current weights.
  Transformer<float>& model() { return *model_; }
  // The current parameters on the host (downloaded from the GPU when training there).
  const ParamStore<float>& host_params();
  GpuModel* gpu() { return gpu_.get(); }  // null on the CPU
  // Activation bytes of the model that trains (host arena or device buffers).
  int64_t activation_bytes() const;
  const Config& config() const { return cfg_; }
  Loader& loader() { return *loader_; }
  const DataParallel* data_parallel() const { return dp_.get(); }  // null on the GPU
  const ProcessGrid& grid() const { return *grid_; }

 private:
  Trainer(const Config& cfg, ProcessGrid* grid);  // null: a single-process grid of its own
  BatchStructure batch_structure(const StepBatch& b, int64_t a);

  Config cfg_;
  std::unique_ptr<ProcessGrid> own_grid_;  // the single-process constructor's
  ProcessGrid* grid_;
  std::unique_ptr<Transformer<float>> model_;
  std::unique_ptr<DataParallel> dp_;  // CPU training
  std::unique_ptr<GpuModel> gpu_;     // GPU training
  std::unique_ptr<Comm> nccl_;        // GPU data parallel: the world over NCCL
  bool host_stale_ = false;           // the GPU has stepped since host_params() last synced
  std::unique_ptr<Dataset> dataset_;      // hdf5 source only
  std::unique_ptr<Dataset> val_dataset_;  // data.val, when given
  std::unique_ptr<SampleSource> source_;
  std::unique_ptr<Loader> loader_;
  int step_ = 0;
  int64_t tokens_seen_ = 0;
};

// A whole run: run directory with config.yaml and metrics.jsonl, progress on stdout, a
// summary and a final checkpoint at the end. `force` replaces a run the directory already holds
// (as run.overwrite does). Returns the process exit code.
int run_training(const Config& cfg, bool force = false);

}  // namespace longctx
