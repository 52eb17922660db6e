// Data parallel over the replicas of a ProcessGrid: gradients are summed in buckets of
// parallel.bucket_mb; every replica then takes the same AdamW step. With parallel.overlap the
// buckets start reducing during the last micro-batch's backward, as soon as the layers that own
// them are done (buckets are cut from the top of the flat buffer, where backward begins). With ZeRO-1
// (parallel.zero: 1) the gradients are reduce-scattered instead, each replica clips and updates
// only its 1/dp shard of the flat parameter buffer with the AdamW moments of that shard alone,
// and an all-gather returns the updated parameters to everyone. Either way every rank ends the
// step with identical parameters.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/comm.h"
#include "core/config.h"
#include "core/process_grid.h"
#include "core/param_store.h"
#include "trainer/adamw.h"

namespace longctx {

class DataParallel {
 public:
  // Gradients are summed over the whole grid (dp × sp); under ZeRO-1 the optimizer state is
  // sharded over the dp replicas. The grid must outlive this object.
  DataParallel(ProcessGrid& grid, const ParamStore<float>& store, const TrainConfig& train,
               const ParallelConfig& par);

  // Overlap: arm() before the last micro-batch's backward; the model then calls grads_ready(lo)
  // whenever the gradients at flat offsets ≥ lo are final, which starts every bucket inside.
  // Without overlap (or ZeRO-1, which reduce-scatters after backward) both do nothing.
  void arm();
  void grads_ready(ParamStore<float>& store, int64_t lo);
  // Sums the gradients over the grid (the buckets not yet started, then waits for all);
  // returns the global gradient norm before clipping.
  double reduce_gradients(ParamStore<float>& store);
  // Clips to train.clip and takes one AdamW step (ZeRO-1: on this rank's shard, then gathers).
  void update(ParamStore<float>& store, double grad_norm, double lr, int64_t t);

  const AdamW<float>& optimizer() const { return *opt_; }
  bool sharded() const { return zero_; }  // ZeRO-1 over more than one replica
  // Checkpoints: the whole AdamW moments (the store's size) on every rank, the ZeRO-1 shards
  // gathered (collective over dp); and the reverse, each rank keeping its own range.
  void gather_moments(std::vector<float>& m, std::vector<float>& v);
  void load_moments(const std::vector<float>& m, const std::vector<float>& v);
  // Bytes this rank holds for parameters, gradients and optimizer moments.
  int64_t param_bytes() const { return n_ * 4; }
  int64_t grad_bytes() const { return n_ * 4; }
  int64_t optimizer_bytes() const { return 2 * (opt_->hi() - opt_->lo()) * 4; }

 private:
  // Starts the all-reduce of every bucket whose range lies in [lo, n) and has not started.
  void start_buckets(float* g, int64_t lo);

  ProcessGrid& grid_;
  bool zero_, overlap_, armed_ = false;
  int64_t next_ = 0;  // buckets start from the top; [next_, n) has started
  double clip_;
  int64_t n_, bucket_, shard_;  // parameters; elements per bucket; ZeRO shard (padded) size
  std::unique_ptr<AdamW<float>> opt_;
  std::vector<float> gather_;  // ZeRO-1: dp · shard_ elements, the padded flat buffer
  std::vector<float> mine_;    // ZeRO-1: this rank's shard (padded)
};

}  // namespace longctx
