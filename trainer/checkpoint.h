// Checkpoints of a training run: where they live (run.out_dir/checkpoints/step_NNNNNNNN.h5 and
// a `latest` pointer), which one a run resumes from, which config changes a resume accepts, and
// a writer that saves a host copy of the state on a background thread, so that training stalls
// only for the copy.
#pragma once
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "core/config.h"
#include "trainer/checkpoint_file.h"

namespace longctx {

std::string checkpoint_dir(const Config& cfg);
std::string checkpoint_path(const Config& cfg, int64_t step);

// The checkpoints in `dir` by step, newest first (names step_<digits>.h5 only).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

struct ResumePoint {
  std::string path;
  CheckpointState state;
};

// A checkpoint file; a run directory's newest checkpoint (in DIR/checkpoints, else DIR), which
// is the one `latest` names and `resume: auto` takes; or the file a `latest` pointer names.
// Error naming the directory when it holds none.
std::string resolve_checkpoint(const std::string& path);

// checkpoint.resume: none -> nothing; a path -> that checkpoint (Error naming the file when it
// cannot be read); auto -> the newest checkpoint of the run that reads back whole, each damaged
// one skipped with a warning on stderr that names it; nothing when there is none, and an Error
// listing every file and why it was refused when there are checkpoints but none reads back.
std::optional<ResumePoint> find_resume_point(const Config& cfg);

// Compares the checkpoint's config with this run's. Keys that change the model or the data
// order (model, attention, objective, data, run.seed) throw ConfigError listing each with both
// values; the others (steps, the LR schedule, batch and grid, log/eval/checkpoint cadence) are
// accepted and returned as "key: old -> new".
std::vector<std::string> check_resume_config(const std::string& checkpoint_yaml,
                                             const std::string& run_yaml,
                                             const std::string& path);

// Rank `root`'s resume point (or none) on every rank of `comm`.
std::optional<ResumePoint> broadcast_resume_point(Comm& comm, std::optional<ResumePoint> rp,
                                                  int root);

// Writes checkpoints on a thread of its own: write() hands over a state (the copy the trainer
// made) and returns; the file is written and renamed, `latest` moves to it, and all but the
// newest `keep` checkpoints are removed. A write waits for the previous one; a failure is
// rethrown by the next write() or wait().
class CheckpointWriter {
 public:
  CheckpointWriter(std::string dir, int keep);
  ~CheckpointWriter();  // waits for the write in flight (errors are reported, not thrown)
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  void write(CheckpointState state, const std::string& path);
  void wait();
  // After wait(): the buffers of the last state written, to fill for the next checkpoint
  // (empty the first time).
  CheckpointState take_buffer() { return std::move(spare_); }
  // Allocates and touches buffers for a state of n parameters (and moments) now, so that the
  // first checkpoint's copy does not pay for page faults in the middle of training.
  void reserve(int64_t n);
  // Seconds the last write waited for took, and its bytes.
  double last_seconds() const { return last_seconds_; }
  int64_t last_bytes() const { return last_bytes_; }

 private:
  void finish(const std::string& path);  // latest pointer, pruning

  std::string dir_;
  int keep_;
  std::thread thread_;
  std::exception_ptr error_;
  CheckpointState done_state_, spare_;  // the thread hands its state back for reuse
  double last_seconds_ = 0, done_seconds_ = 0;  // done_*: the thread's, copied after the join
  int64_t last_bytes_ = 0, done_bytes_ = 0;
};

}  // namespace longctx
