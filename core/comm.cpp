#include "core/comm.h"

#include <cstring>

#include "core/error.h"

namespace longctx {

size_t dtype_bytes(DType t) {
  switch (t) {
    case DType::f32: case DType::i32: return 4;
    case DType::f64: case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

std::map<std::string, CommCounter> Comm::take_stats() {
  std::map<std::string, CommCounter> s;
  s.swap(stats_);
  return s;
}

int64_t Comm::ring_bytes(int64_t n, DType t, int passes) const {
  return passes * (size() - 1) * n * int64_t(dtype_bytes(t)) / size();
}

Comm::Timed::Timed(Comm& c, const char* op, int64_t bytes, bool new_call)
    : counter_(c.stats_[op]), t0_(std::chrono::steady_clock::now()) {
  counter_.calls += new_call;
  counter_.bytes += bytes;
}

Comm::Timed::~Timed() {
  counter_.seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

namespace {

class SelfComm : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "self"; }
  void all_reduce_sum(void*, int64_t, DType) override {}
  void reduce_scatter_sum(const void* s, void* r, int64_t n, DType t) override { copy(s, r, n, t); }
  void all_gather(const void* s, void* r, int64_t n, DType t) override { copy(s, r, n, t); }
  void all_to_all(const void* s, void* r, int64_t n, DType t) override { copy(s, r, n, t); }
  void send_recv(const void* s, int64_t ns, int dst, void* r, int64_t nr, int src,
                 DType t) override {
    LONGCTX_CHECK(dst == 0 && src == 0 && ns == nr, "send_recv on one process: only to itself");
    copy(s, r, ns, t);
  }
  void broadcast(void*, int64_t, DType, int root) override {
    LONGCTX_CHECK(root == 0, "broadcast on one process: root must be 0");
  }
  void barrier() override {}
  std::unique_ptr<Comm> split(int, int) override { return std::make_unique<SelfComm>(); }

 private:
  static void copy(const void* s, void* r, int64_t n, DType t) {
    if (s != r) std::memmove(r, s, size_t(n) * dtype_bytes(t));
  }
};

}  // namespace

std::unique_ptr<Comm> make_self_comm() { return std::make_unique<SelfComm>(); }

#if !LONGCTX_HAVE_CUDA
std::unique_ptr<Comm> make_nccl_comm(Comm&, int) {
  throw Error(
      "NCCL communicator: longctx was built without CUDA (LONGCTX_CUDA off); rebuild where the "
      "CUDA toolkit and NCCL are found");
}
#endif

}  // namespace longctx
