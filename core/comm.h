// Collective communication, written once for every backend: MpiComm (host buffers; CPU runs),
// NcclComm (device buffers; CUDA runs) and SelfComm (one process, no library). Every
// distributed algorithm (gradient sync, ZeRO-1, sequence-parallel attention) is written against
// this interface, so the MPI runs on one machine test the code that runs on a GPU cluster.
// Each call counts the bytes this rank sends and the time it takes, per operation.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace longctx {

enum class DType { f32, f64, i32, i64, u8 };
size_t dtype_bytes(DType t);
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

struct CommCounter {
  int64_t calls = 0;
  int64_t bytes = 0;  // bytes this rank sent
  double seconds = 0;  // time the caller spent in the calls (started ones: start, progress, wait)
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "self" | "mpi" | "nccl"

  // buf[count] = Σ over ranks, in place.
  virtual void all_reduce_sum(void* buf, int64_t count, DType t) = 0;
  // recv[count] = Σ over ranks of send[rank·count, (rank+1)·count).
  virtual void reduce_scatter_sum(const void* send, void* recv, int64_t count, DType t) = 0;
  // recv[r·count, (r+1)·count) = rank r's send[count].
  virtual void all_gather(const void* send, void* recv, int64_t count, DType t) = 0;
  // recv[r·count, ...) = rank r's send[rank·count, ...): block r of send goes to rank r.
  virtual void all_to_all(const void* send, void* recv, int64_t count, DType t) = 0;
  // Sends send[send_count] to dst while receiving recv[recv_count] from src, posted together so
  // that a ring of any size cannot deadlock.
  virtual void send_recv(const void* send, int64_t send_count, int dst, void* recv,
                         int64_t recv_count, int src, DType t) = 0;
  virtual void broadcast(void* buf, int64_t count, DType t, int root) = 0;
  // Starts buf[count] = Σ over ranks in place and returns at once where the backend can (MPI:
  // MPI_Iallreduce), so that gradient buckets reduce while backward goes on; buf must not be
  // touched until wait_all() returns. progress() lets a backend that advances only inside its
  // calls move the pending operations along. By default: the blocking all-reduce.
  virtual void all_reduce_sum_start(void* buf, int64_t count, DType t) {
    all_reduce_sum(buf, count, t);
  }
  virtual void progress() {}
  virtual void wait_all() {}
  virtual void barrier() = 0;
  // Ranks with the same color form a new communicator, ordered by key.
  virtual std::unique_ptr<Comm> split(int color, int key) = 0;

  template <class T> void all_reduce_sum(T* buf, int64_t n) { all_reduce_sum(buf, n, dtype_of<T>()); }
  template <class T> void all_reduce_sum_start(T* buf, int64_t n) {
    all_reduce_sum_start(buf, n, dtype_of<T>());
  }
  template <class T> void reduce_scatter_sum(const T* s, T* r, int64_t n) {
    reduce_scatter_sum(s, r, n, dtype_of<T>());
  }
  template <class T> void all_gather(const T* s, T* r, int64_t n) { all_gather(s, r, n, dtype_of<T>()); }
  template <class T> void all_to_all(const T* s, T* r, int64_t n) { all_to_all(s, r, n, dtype_of<T>()); }
  template <class T> void send_recv(const T* s, int64_t ns, int dst, T* r, int64_t nr, int src) {
    send_recv(s, ns, dst, r, nr, src, dtype_of<T>());
  }
  template <class T> void broadcast(T* buf, int64_t n, int root) { broadcast(buf, n, dtype_of<T>(), root); }

  // Counters per operation name ("all_reduce", ...); take_stats() returns and clears them.
  const std::map<std::string, CommCounter>& stats() const { return stats_; }
  std::map<std::string, CommCounter> take_stats();

 protected:
  // What a bandwidth-optimal ring algorithm sends per rank: passes · (N−1)/N · total bytes, for
  // n elements of type t in total.
  int64_t ring_bytes(int64_t n, DType t, int passes) const;
  // Times one operation into stats_[op] with `bytes` sent by this rank.
  class Timed {
   public:
    Timed(Comm& c, const char* op, int64_t bytes, bool new_call = true);
    ~Timed();

   private:
    CommCounter& counter_;
    std::chrono::steady_clock::time_point t0_;
  };
  std::map<std::string, CommCounter> stats_;
};

// One process: every collective is the identity (or a copy).
std::unique_ptr<Comm> make_self_comm();

// MPI_COMM_WORLD (MPI must be initialized: see mpi_env.h).
std::unique_ptr<Comm> make_mpi_world_comm();

// NCCL over the ranks of `bootstrap` (a host-buffer Comm: MPI, or self for one process), on CUDA
// device `device` (usually local_rank(), see mpi_env.h). Collective over bootstrap: rank 0 makes
// NCCL's unique id and broadcasts it. Its calls take device buffers and return once the result
// is there. Throws Error when built without CUDA or when the device does not exist.
std::unique_ptr<Comm> make_nccl_comm(Comm& bootstrap, int device);

}  // namespace longctx
