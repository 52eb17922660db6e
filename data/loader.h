// The streaming loader: a background thread reads the next steps' samples into a bounded queue
// (data.prefetch steps), so the training step does not wait on disk and memory is bounded by
// the queue, not by the dataset.
//
// Schedule: each step takes the next G = dp·A·B global sample numbers [s0, s0 + G); dp rank r
// takes [s0 + r·A·B, s0 + (r+1)·A·B) as its A micro-batches of B samples; each of the sp ranks
// of a dp group gets the same samples and keeps its T/sp positions of every sequence (a
// contiguous slice, or the ranges of a sequence-parallel layout; document ids stay whole:
// attention needs them for every key). The position
// is the next step's s0: a run resumed from it, on any grid, neither repeats nor skips a sample.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "data/sample_source.h"

namespace longctx {

struct LoaderGrid {
  int dp_rank = 0, dp_size = 1;
  int sp_rank = 0, sp_size = 1;
  // The positions [begin, end) this sp rank keeps, ascending (sequence-parallel layouts);
  // empty: the contiguous slice [sp_rank·T/sp, (sp_rank+1)·T/sp).
  std::vector<std::pair<int64_t, int64_t>> sp_ranges;
};

// One rank's share of one step.
struct StepBatch {
  int64_t first_sample = 0;  // s0 of the step (global)
  int64_t A = 1, B = 1;      // micro-batches × samples each
  int64_t T = 0, T_full = 0;  // this rank's slice of the sequence, and the whole sequence
  std::vector<int32_t> inputs, targets;  // [A·B, T]
  std::vector<int32_t> doc;              // [A·B, T_full] when the source has documents
  std::vector<int64_t> samples;          // [A·B] the global sample numbers served
};

// Where the loader stands; serializes to one line of JSON for checkpoints.
struct LoaderState {
  int64_t next_sample = 0;
  int64_t samples_per_epoch = 0;  // checked on restore: the same data and seq_len
  std::string to_json() const;
  static LoaderState from_json(const std::string& text);  // Error naming what is malformed
};

class Loader {
 public:
  // `source` must outlive the loader. Starts reading at sample 0.
  Loader(const SampleSource& source, int64_t seq_len, int64_t micro_batch, int64_t grad_accum,
         const LoaderGrid& grid, int prefetch);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next step's batch; waits if the reader is behind (the wait is added to wait_ms()).
  // An error the reader met (a bad shard, an id outside the vocabulary) is thrown here.
  std::shared_ptr<const StepBatch> next();
  // Milliseconds next() spent waiting since the last call of take_wait_ms().
  double take_wait_ms();

  LoaderState state() const;  // the position after the batches next() has returned
  // Continues from a saved position (the queue is dropped and refilled). Error when the state
  // belongs to a source with another number of samples per epoch.
  void restore(const LoaderState& st);

  int64_t step_samples() const { return G_; }  // G = dp·A·B

 private:
  void start(int64_t next_sample);
  void stop();
  void run(int64_t first);
  std::shared_ptr<StepBatch> make_batch(int64_t s0) const;

  const SampleSource& src_;
  int64_t T_, B_, A_, G_;
  LoaderGrid grid_;
  size_t capacity_;
  int64_t next_sample_ = 0;  // the consumer's position
  double wait_ms_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<StepBatch>> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace longctx
