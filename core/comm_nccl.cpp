// Comm over NCCL, on device buffers. Each call is enqueued on the communicator's own stream and
// waits for it, so the interface's contract (the result is in the buffer on return) is the same
// as MPI's. Every CUDA and NCCL call is checked and names the operation.
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/comm.h"
#include "core/cuda_check.h"
#include "core/cuda_env.h"
#include "core/error.h"

namespace longctx {
namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::u8:
      return ncclUint8;
  }
  throw Error("NCCL: unknown dtype");
}

void nccl_check(ncclResult_t rc, const char* op, const char* call, const char* file, int line) {
  if (rc == ncclSuccess) return;
  const char* detail = ncclGetLastError(nullptr);  // NCCL's own words, e.g. which argument
  throw Error(str(op, ": ", call_name(call), " failed: ", ncclGetErrorString(rc),
                  detail && *detail ? str(" (", detail, ")") : std::string(),
                  "; NCCL_DEBUG=WARN prints NCCL's diagnosis [", file, ":", line, "]"));
}

#define NCCL_CHECK(op, call) nccl_check((call), (op), #call, __FILE__, __LINE__)

class NcclComm : public Comm {
 public:
  // Takes ownership of `comm`, an initialized communicator on `device`.
  NcclComm(ncclComm_t comm, int device) : comm_(comm), device_(device) {
    try {
      NCCL_CHECK("NCCL communicator", ncclCommUserRank(comm_, &rank_));
      NCCL_CHECK("NCCL communicator", ncclCommCount(comm_, &size_));
      LONGCTX_CUDA_CHECK("NCCL communicator", cudaSetDevice(device_));
      // Non-blocking: the legacy default stream would serialize with the compute streams.
      LONGCTX_CUDA_CHECK("NCCL communicator",
                         cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      LONGCTX_CUDA_CHECK("NCCL communicator", cudaMalloc(&flag_, sizeof(int)));
      LONGCTX_CUDA_CHECK("NCCL communicator", cudaMemset(flag_, 0, sizeof(int)));
    } catch (...) {
      failed_ = true;
      release();
      throw;
    }
  }
  ~NcclComm() override { release(); }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce_sum(void* buf, int64_t n, DType t) override {
    Timed timed(*this, "all_reduce", ring_bytes(n, t, 2));
    guard("NCCL all_reduce", [&] {
      NCCL_CHECK("NCCL all_reduce",
                 ncclAllReduce(buf, buf, size_t(n), nccl_type(t), ncclSum, comm_, stream_));
    });
  }
  // Enqueued on the communication stream and left running; wait_all() waits for the stream.
  void all_reduce_sum_start(void* buf, int64_t n, DType t) override {
    Timed timed(*this, "all_reduce", ring_bytes(n, t, 2));
    guard("NCCL all_reduce (started)", [&] {
      NCCL_CHECK("NCCL all_reduce (started)",
                 ncclAllReduce(buf, buf, size_t(n), nccl_type(t), ncclSum, comm_, stream_));
    }, false);
  }
  void wait_all() override {
    Timed timed(*this, "all_reduce", 0, false);
    guard("NCCL wait", [] {});
  }
  void reduce_scatter_sum(const void* s, void* r, int64_t n, DType t) override {
    Timed timed(*this, "reduce_scatter", ring_bytes(n * size_, t, 1));
    guard("NCCL reduce_scatter", [&] {
      NCCL_CHECK("NCCL reduce_scatter",
                 ncclReduceScatter(s, r, size_t(n), nccl_type(t), ncclSum, comm_, stream_));
    });
  }
  void all_gather(const void* s, void* r, int64_t n, DType t) override {
    Timed timed(*this, "all_gather", ring_bytes(n * size_, t, 1));
    guard("NCCL all_gather", [&] {
      NCCL_CHECK("NCCL all_gather", ncclAllGather(s, r, size_t(n), nccl_type(t), comm_, stream_));
    });
  }
  void all_to_all(const void* s, void* r, int64_t n, DType t) override {
    Timed timed(*this, "all_to_all", int64_t(size_ - 1) * n * int64_t(dtype_bytes(t)));
    const size_t block = size_t(n) * dtype_bytes(t);
    guard("NCCL all_to_all", [&] {
      grouped("NCCL all_to_all", [&] {
        for (int p = 0; p < size_; ++p) {
          NCCL_CHECK("NCCL all_to_all", ncclSend(static_cast<const char*>(s) + p * block, size_t(n),
                                                 nccl_type(t), p, comm_, stream_));
          NCCL_CHECK("NCCL all_to_all", ncclRecv(static_cast<char*>(r) + p * block, size_t(n),
                                                 nccl_type(t), p, comm_, stream_));
        }
      });
    });
  }
  void send_recv(const void* s, int64_t ns, int dst, void* r, int64_t nr, int src,
                 DType t) override {
    // Checked here: inside a group NCCL would only report it at the group's end.
    LONGCTX_CHECK(dst >= 0 && dst < size_ && src >= 0 && src < size_, "NCCL send_recv: dst ", dst,
                  " and src ", src, " must be ranks of this communicator (size ", size_, ")");
    Timed timed(*this, "send_recv", ns * int64_t(dtype_bytes(t)));
    guard("NCCL send_recv", [&] {
      grouped("NCCL send_recv", [&] {
        NCCL_CHECK("NCCL send_recv", ncclSend(s, size_t(ns), nccl_type(t), dst, comm_, stream_));
        NCCL_CHECK("NCCL send_recv", ncclRecv(r, size_t(nr), nccl_type(t), src, comm_, stream_));
      });
    });
  }
  void broadcast(void* buf, int64_t n, DType t, int root) override {
    LONGCTX_CHECK(root >= 0 && root < size_, "NCCL broadcast: root ", root,
                  " is not a rank of this communicator (size ", size_, ")");
    Timed timed(*this, "broadcast", rank_ == root ? n * int64_t(dtype_bytes(t)) : 0);
    guard("NCCL broadcast", [&] {
      NCCL_CHECK("NCCL broadcast",
                 ncclBroadcast(buf, buf, size_t(n), nccl_type(t), root, comm_, stream_));
    });
  }
  // An all-reduce of one device int: every rank's stream waits for every other rank's.
  void barrier() override {
    guard("NCCL barrier", [&] {
      NCCL_CHECK("NCCL barrier",
                 ncclAllReduce(flag_, flag_, 1, ncclInt32, ncclSum, comm_, stream_));
    });
  }
  std::unique_ptr<Comm> split(int color, int key) override {
    LONGCTX_CHECK(color >= 0, "NCCL split: color must be >= 0, got ", color);
    ncclComm_t c = nullptr;
    guard("NCCL split", [&] {
      LONGCTX_CUDA_CHECK("NCCL split", cudaSetDevice(device_));
      // A null config: the new communicator inherits this one's.
      NCCL_CHECK("NCCL split", ncclCommSplit(comm_, color, key, &c, nullptr));
    });
    return std::make_unique<NcclComm>(c, device_);
  }

 private:
  // Runs an operation's enqueue, then (unless it was only started) waits for the stream. A
  // failure marks the communicator failed, so that the destructor aborts it instead of waiting
  // for peers that may never come.
  template <class F>
  void guard(const char* op, F&& enqueue, bool wait = true) {
    try {
      enqueue();
      if (wait) LONGCTX_CUDA_CHECK(op, cudaStreamSynchronize(stream_));
    } catch (...) {
      failed_ = true;
      throw;
    }
  }
  // Point-to-point calls posted together, so that they cannot deadlock one another. The group
  // is closed even when a call in it fails: the thread would stay inside it otherwise.
  template <class F>
  void grouped(const char* op, F&& calls) {
    NCCL_CHECK(op, ncclGroupStart());
    try {
      calls();
    } catch (...) {
      (void)ncclGroupEnd();
      throw;
    }
    NCCL_CHECK(op, ncclGroupEnd());
  }
  // Never throws: it runs in the destructor.
  void release() noexcept {
    if (comm_) (void)(failed_ ? ncclCommAbort(comm_) : ncclCommDestroy(comm_));
    if (flag_) (void)cudaFree(flag_);
    if (stream_) (void)cudaStreamDestroy(stream_);
    comm_ = nullptr;
    flag_ = nullptr;
    stream_ = nullptr;
  }

  ncclComm_t comm_;
  int device_;
  int rank_ = 0, size_ = 1;
  cudaStream_t stream_ = nullptr;
  int* flag_ = nullptr;  // the barrier's all-reduce operand
  bool failed_ = false;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm(Comm& bootstrap, int device) {
  const int n = cuda_device_count();
  if (n == 0) throw Error("NCCL communicator: no CUDA device (no GPU, or no driver)");
  if (device < 0 || device >= n)
    throw Error(str("NCCL communicator: CUDA device ", device,
                    " does not exist (this process sees ", n, ")"));
  LONGCTX_CUDA_CHECK("NCCL communicator", cudaSetDevice(device));
  ncclUniqueId id{};
  if (bootstrap.rank() == 0) NCCL_CHECK("NCCL communicator", ncclGetUniqueId(&id));
  bootstrap.broadcast(reinterpret_cast<uint8_t*>(&id), int64_t(sizeof id), 0);
  ncclComm_t comm = nullptr;
  NCCL_CHECK("NCCL communicator", ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
  return std::make_unique<NcclComm>(comm, device);
}

}  // namespace longctx
