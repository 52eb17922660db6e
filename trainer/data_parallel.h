// Data parallel over the replicas of a ProcessGrid: after backward, gradients are summed in
// buckets of parallel.bucket_mb; every replica then takes the same AdamW step. With ZeRO-1
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

  // Sums the gradients over the grid; returns the global gradient norm before clipping.
  double reduce_gradients(ParamStore<float>& store);
  // Clips to train.clip and takes one AdamW step (ZeRO-1: on this rank's shard, then gathers).
  void update(ParamStore<float>& store, double grad_norm, double lr, int64_t t);

  const AdamW<float>& optimizer() const { return *opt_; }
  // Bytes this rank holds for parameters, gradients and optimizer moments.
  int64_t param_bytes() const { return n_ * 4; }
  int64_t grad_bytes() const { return n_ * 4; }
  int64_t optimizer_bytes() const { return 2 * (opt_->hi() - opt_->lo()) * 4; }

 private:
  ProcessGrid& grid_;
  bool zero_;
  double clip_;
  int64_t n_, bucket_, shard_;  // parameters; elements per bucket; ZeRO shard (padded) size
  std::unique_ptr<AdamW<float>> opt_;
  std::vector<float> gather_;  // ZeRO-1: dp · shard_ elements, the padded flat buffer
  std::vector<float> mine_;    // ZeRO-1: this rank's shard (padded)
};

}  // namespace longctx
