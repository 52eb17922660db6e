// Comm over MPI, on host buffers. Every call checks its return code and names the operation.
#include <mpi.h>

#include <climits>
#include <vector>

#include "core/comm.h"
#include "core/error.h"

namespace longctx {
namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

// MPI counts are int: larger buffers go in pieces.
constexpr int64_t kMaxCount = INT_MAX / 8;

void check(int rc, const char* op) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(str("MPI ", op, " failed: ", std::string(msg, size_t(len))));
}

class MpiComm : public Comm {
 public:
  explicit MpiComm(MPI_Comm c, bool owned) : comm_(c), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    // Pending operations mean an error unwound a step: waiting could hang on ranks that are
    // gone, and the job is about to be aborted anyway, so the communicator is left as it is.
    if (owned_ && !finalized && pending_.empty()) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce_sum(void* buf, int64_t n, DType t) override {
    Timed timed(*this, "all_reduce", ring_bytes(n, t, 2));
    auto* p = static_cast<char*>(buf);
    for (int64_t done = 0; done < n; done += kMaxCount) {
      const int c = int(std::min(kMaxCount, n - done));
      check(MPI_Allreduce(MPI_IN_PLACE, p + done * dtype_bytes(t), c, mpi_type(t), MPI_SUM, comm_),
            "all_reduce");
    }
  }
  void all_reduce_sum_start(void* buf, int64_t n, DType t) override {
    Timed timed(*this, "all_reduce", ring_bytes(n, t, 2));
    auto* p = static_cast<char*>(buf);
    for (int64_t done = 0; done < n; done += kMaxCount) {
      const int c = int(std::min(kMaxCount, n - done));
      pending_.emplace_back();
      check(MPI_Iallreduce(MPI_IN_PLACE, p + done * dtype_bytes(t), c, mpi_type(t), MPI_SUM, comm_,
                           &pending_.back()),
            "all_reduce (started)");
    }
  }
  // Open MPI advances non-blocking collectives only inside MPI calls: a test now and then.
  void progress() override {
    if (pending_.empty()) return;
    Timed timed(*this, "all_reduce", 0, false);
    int done = 0;
    check(MPI_Testall(int(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE),
          "all_reduce (progress)");
    if (done) pending_.clear();
  }
  void wait_all() override {
    if (pending_.empty()) return;
    Timed timed(*this, "all_reduce", 0, false);
    check(MPI_Waitall(int(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE),
          "all_reduce (wait)");
    pending_.clear();
  }
  void reduce_scatter_sum(const void* s, void* r, int64_t n, DType t) override {
    Timed timed(*this, "reduce_scatter", ring_bytes(n * size_, t, 1));
    LONGCTX_CHECK(n <= kMaxCount, "reduce_scatter: ", n, " elements per rank is too many");
    check(MPI_Reduce_scatter_block(s, r, int(n), mpi_type(t), MPI_SUM, comm_), "reduce_scatter");
  }
  void all_gather(const void* s, void* r, int64_t n, DType t) override {
    Timed timed(*this, "all_gather", ring_bytes(n * size_, t, 1));
    LONGCTX_CHECK(n <= kMaxCount, "all_gather: ", n, " elements per rank is too many");
    check(MPI_Allgather(s, int(n), mpi_type(t), r, int(n), mpi_type(t), comm_), "all_gather");
  }
  void all_to_all(const void* s, void* r, int64_t n, DType t) override {
    Timed timed(*this, "all_to_all", int64_t(size_ - 1) * n * int64_t(dtype_bytes(t)));
    LONGCTX_CHECK(n <= kMaxCount, "all_to_all: ", n, " elements per rank is too many");
    check(MPI_Alltoall(s, int(n), mpi_type(t), r, int(n), mpi_type(t), comm_), "all_to_all");
  }
  void send_recv(const void* s, int64_t ns, int dst, void* r, int64_t nr, int src,
                 DType t) override {
    Timed timed(*this, "send_recv", ns * int64_t(dtype_bytes(t)));
    LONGCTX_CHECK(ns <= kMaxCount && nr <= kMaxCount, "send_recv: message too large");
    check(MPI_Sendrecv(s, int(ns), mpi_type(t), dst, 0, r, int(nr), mpi_type(t), src, 0, comm_,
                       MPI_STATUS_IGNORE),
          "send_recv");
  }
  void broadcast(void* buf, int64_t n, DType t, int root) override {
    Timed timed(*this, "broadcast", rank_ == root ? n * int64_t(dtype_bytes(t)) : 0);
    auto* p = static_cast<char*>(buf);
    for (int64_t done = 0; done < n; done += kMaxCount) {
      const int c = int(std::min(kMaxCount, n - done));
      check(MPI_Bcast(p + done * dtype_bytes(t), c, mpi_type(t), root, comm_), "broadcast");
    }
  }
  void barrier() override { check(MPI_Barrier(comm_), "barrier"); }
  std::unique_ptr<Comm> split(int color, int key) override {
    MPI_Comm c;
    check(MPI_Comm_split(comm_, color, key, &c), "split");
    return std::make_unique<MpiComm>(c, true);
  }

 private:
  MPI_Comm comm_;
  bool owned_;
  std::vector<MPI_Request> pending_;  // started all-reduces
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_world_comm() {
  return std::make_unique<MpiComm>(MPI_COMM_WORLD, false);
}

}  // namespace longctx
