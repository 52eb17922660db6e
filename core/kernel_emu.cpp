// The CPU emulator of core/warp_ops.cuh (see kernel_emu.h for the execution model).
//
// Synchronisation: every barrier (sync_block, the per-warp exchange of a warp operation, the start
// of the next block) is a generation counter that waiters spin on, yielding the core, before they
// sleep on a condition variable: a block has many more threads than the machine has cores, so a
// waiter's best move is to let the threads it waits for run.
//
// Deadlock detection: `stuck` counts the block's threads that wait at a barrier not yet released
// plus those that returned. A thread is added after it arrives (unless it completes the barrier)
// and removed by the thread that releases the barrier, before the release; so `stuck` never
// exceeds the true number, and when it reaches the block size no thread can ever release anything.
#include "core/kernel_emu.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace longctx::cuda::emu {
namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;
// The most dynamic shared memory a block can have on sm_90 (after opting in above 48 KiB).
constexpr size_t kMaxSmemBytes = 227 * 1024;
// Yields before a waiter sleeps: enough for the scheduler to run every other thread of a
// 1024-thread block about once on a 2-core machine.
constexpr int kSpinYields = 64;

// Thrown in threads woken from a barrier because another thread of the launch failed; caught by
// the worker loop, never seen by launch()'s caller.
struct Poisoned {};

class Gate {
 public:
  uint64_t generation() const { return gen_.load(std::memory_order_acquire); }

  // Waits until the generation differs from `seen` (true) or stop() holds (false).
  template <class Stop>
  bool wait(uint64_t seen, Stop stop) {
    for (int i = 0; i < kSpinYields; ++i) {
      if (gen_.load(std::memory_order_acquire) != seen) return true;
      if (stop()) return false;
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    // seq_cst pairs with advance()/wake(): either the waker sees this sleeper, or this sleeper
    // sees the new generation or stop condition.
    sleepers_.fetch_add(1);
    for (;;) {
      if (gen_.load() != seen || stop()) break;
      cv_.wait(lock);
    }
    sleepers_.fetch_sub(1);
    return gen_.load() != seen;
  }

  void advance() {
    gen_.fetch_add(1);
    wake();
  }

  // Wakes the sleepers so that they re-check their stop condition (set it, seq_cst, first).
  void wake() {
    if (sleepers_.load() == 0) return;
    std::lock_guard<std::mutex> lock(mutex_);
    cv_.notify_all();
  }

 private:
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
};

enum class WarpOp : int { shfl_xor, mma };

const char* op_name(WarpOp op) { return op == WarpOp::shfl_xor ? "shfl_xor" : "mma_bf16_16816"; }

// One lane's contribution to a warp operation.
struct Slot {
  WarpOp op;
  float v;
  uint32_t a[4];
  uint32_t b[2];
};

struct alignas(64) Warp {
  Gate gate;
  std::atomic<int> arrived{0};
  std::atomic<int> returned{0};         // lanes that returned from the kernel in this block
  std::atomic<int> first_returned{-1};  // the first of them, for the error message
  // Two sets, alternated by the gate's generation: a lane can write set k+2 only after every
  // lane passed the barrier of operation k+1, so after every lane has read set k.
  Slot slots[2][kWarpSize];
};

struct Launch {
  Launch(wo::Dim3 g, int n, size_t smem, const std::function<void()>& b)
      : grid(g),
        threads(n),
        smem_bytes(smem),
        body(b),
        n_blocks(uint64_t(g.x) * g.y * g.z),
        smem_storage((smem + 15) / 16),
        warps(new Warp[size_t(n / kWarpSize)]) {}

  const wo::Dim3 grid;
  const int threads;
  const size_t smem_bytes;
  const std::function<void()>& body;
  const uint64_t n_blocks;

  // The running block, written only between blocks (see start_block()).
  unsigned bx = 0, by = 0, bz = 0;
  struct alignas(16) Chunk {
    unsigned char bytes[16];
  };
  std::vector<Chunk> smem_storage;
  std::unique_ptr<Warp[]> warps;

  // sync_block: arrivals in the current phase (low 32 bits) and returned threads (high 32).
  std::atomic<uint64_t> block_count{0};
  Gate block_gate;
  std::atomic<int> stuck{0};
  std::atomic<int> done{0};  // threads finished with the block's bookkeeping
  Gate start_gate;           // generation = index of the running block

  std::atomic<bool> poisoned{false};
  std::mutex error_mutex;
  std::exception_ptr error;

  unsigned char* smem() { return reinterpret_cast<unsigned char*>(smem_storage.data()); }

  std::string where(int tid) const {
    return str("thread ", tid, " of block (", bx, ",", by, ",", bz, ")");
  }

  // Sets up block `b` while no thread of the launch runs kernel code.
  void start_block(uint64_t b) {
    bx = unsigned(b % grid.x);
    by = unsigned(b / grid.x % grid.y);
    bz = unsigned(b / grid.x / grid.y);
    std::memset(smem(), 0xFF, smem_storage.size() * sizeof(Chunk));
    block_count.store(0);
    stuck.store(0);
    done.store(0);
    for (int w = 0; w < threads / kWarpSize; ++w) {
      warps[w].returned.store(0);
      warps[w].first_returned.store(-1);
    }
  }

  void fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = e;
    }
    poisoned.store(true);
    block_gate.wake();
    start_gate.wake();
    for (int w = 0; w < threads / kWarpSize; ++w) warps[w].gate.wake();
  }

  void throw_if_poisoned() const {
    if (poisoned.load(std::memory_order_relaxed)) throw Poisoned{};
  }

  // Releases sync_block, completed by the calling thread's arrival or return; `others` threads
  // wait there.
  void release_block_barrier(int arrivals, int others) {
    block_count.fetch_sub(uint64_t(arrivals));
    stuck.fetch_sub(others);
    block_gate.advance();
  }

  // The calling thread now waits at a barrier it did not complete, or has returned.
  void add_stuck(int tid, const char* what) {
    if (stuck.fetch_add(1) + 1 < threads) return;
    // A warp waiting for a lane that returned reports that more precisely.
    for (int w = 0; w < threads / kWarpSize; ++w)
      if (warps[w].arrived.load() > 0 && warps[w].returned.load() > 0) return;
    throw Error(str("emulated kernel deadlock: ", where(tid), " ", what,
                    " while every other thread of the block waits at a sync_block or warp "
                    "operation that cannot complete, or has returned (divergent barriers)"));
  }

  // Bookkeeping after the kernel returned in thread `tid`.
  void thread_returned(int tid, uint64_t block) {
    Warp& w = warps[tid / kWarpSize];
    int none = -1;
    w.first_returned.compare_exchange_strong(none, tid % kWarpSize);
    w.returned.fetch_add(1);
    w.gate.wake();
    const uint64_t v = block_count.fetch_add(uint64_t(1) << 32) + (uint64_t(1) << 32);
    const int arrived = int(v & 0xffffffffu), returned = int(v >> 32);
    if (arrived > 0 && arrived + returned == threads) release_block_barrier(arrived, arrived);
    if (returned < threads) add_stuck(tid, "returned");
    if (done.fetch_add(1) + 1 == threads) {
      if (block + 1 < n_blocks) start_block(block + 1);
      start_gate.advance();
    }
  }

  void run_thread(int tid) {
    for (uint64_t b = 0; b < n_blocks; ++b) {
      const auto stop = [this] { return poisoned.load(); };
      if (b > 0 && !start_gate.wait(b - 1, stop)) return;
      if (poisoned.load()) return;
      try {
        body();
        thread_returned(tid, b);
      } catch (const Poisoned&) {
        return;
      } catch (...) {
        fail(std::current_exception());
        return;
      }
    }
  }
};

struct ThreadContext {
  Launch* launch;
  int tid;
};
thread_local const ThreadContext* t_context = nullptr;

const ThreadContext& context(const char* fn) {
  LONGCTX_CHECK(t_context != nullptr, "wo::", fn,
                "() called outside a kernel run by emu::launch (expected a kernel thread)");
  return *t_context;
}

// Exchanges the lanes' slots: write, barrier, read. Returns the set of 32 slots, valid until the
// calling lane's next warp operation but one.
template <class Fill>
const Slot* exchange(WarpOp op, Fill fill) {
  const ThreadContext& ctx = context(op_name(op));
  Launch& launch = *ctx.launch;
  launch.throw_if_poisoned();
  const int lane = ctx.tid % kWarpSize;
  Warp& w = launch.warps[ctx.tid / kWarpSize];
  const auto lane_returned = [&] {
    return Error(str("warp operation ", op_name(op), " by ", launch.where(ctx.tid), " after lane ",
                     w.first_returned.load(),
                     " of its warp returned from the "
                     "kernel: every lane of the warp must take part (undefined on the GPU)"));
  };
  if (w.returned.load() > 0) throw lane_returned();
  const uint64_t seen = w.gate.generation();
  Slot* slots = w.slots[seen & 1];
  slots[lane].op = op;
  fill(slots[lane]);
  if (w.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == kWarpSize) {
    w.arrived.store(0, std::memory_order_relaxed);
    launch.stuck.fetch_sub(kWarpSize - 1);
    w.gate.advance();
  } else {
    launch.add_stuck(ctx.tid, str("waits at ", op_name(op)).c_str());
    if (!w.gate.wait(seen, [&] { return launch.poisoned.load() || w.returned.load() > 0; })) {
      launch.throw_if_poisoned();
      throw lane_returned();
    }
  }
  for (int i = 0; i < kWarpSize; ++i)
    LONGCTX_CHECK(slots[i].op == op,
                  "lanes of one warp called different warp operations: ", launch.where(ctx.tid),
                  " called ", op_name(op), " while lane ", i, " called ", op_name(slots[i].op));
  return slots;
}

double bf16_lo(uint32_t u) {
  const uint32_t bits = u << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

double bf16_hi(uint32_t u) {
  const uint32_t bits = u & 0xffff0000u;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace

void launch(wo::Dim3 grid, int threads, size_t smem_bytes, const std::function<void()>& body) {
  LONGCTX_CHECK(t_context == nullptr, "emu::launch called from inside a kernel (",
                t_context->launch->where(t_context->tid), "): expected a host-side launch");
  LONGCTX_CHECK(threads >= kWarpSize && threads <= kMaxThreads && threads % kWarpSize == 0,
                "emu::launch: threads per block ", threads, ", expected a multiple of ", kWarpSize,
                " in [", kWarpSize, ", ", kMaxThreads, "]");
  LONGCTX_CHECK(grid.x >= 1 && grid.x <= 0x7fffffffu && grid.y >= 1 && grid.y <= 65535 &&
                    grid.z >= 1 && grid.z <= 65535,
                "emu::launch: grid (", grid.x, ",", grid.y, ",", grid.z,
                "), expected x in [1, 2^31-1], y and z in [1, 65535]");
  LONGCTX_CHECK(smem_bytes <= kMaxSmemBytes, "emu::launch: ", smem_bytes,
                " bytes of dynamic shared memory, expected at most ", kMaxSmemBytes,
                " (sm_90's limit per block)");
  Launch launch(grid, threads, smem_bytes, body);
  launch.start_block(0);
  std::vector<std::thread> pool;
  pool.reserve(size_t(threads));
  try {
    for (int tid = 0; tid < threads; ++tid)
      pool.emplace_back([&launch, tid] {
        const ThreadContext ctx{&launch, tid};
        t_context = &ctx;
        launch.run_thread(tid);
        t_context = nullptr;
      });
  } catch (...) {
    launch.fail(std::current_exception());
  }
  for (std::thread& t : pool) t.join();
  if (launch.error) std::rethrow_exception(launch.error);
}

}  // namespace longctx::cuda::emu

namespace longctx::cuda::wo {

using emu::context;

int thread_x() { return context("thread_x").tid; }
int block_threads() { return context("block_threads").launch->threads; }
unsigned block_x() { return context("block_x").launch->bx; }
unsigned block_y() { return context("block_y").launch->by; }
unsigned block_z() { return context("block_z").launch->bz; }
unsigned char* dynamic_smem() { return context("dynamic_smem").launch->smem(); }

void sync_block() {
  const emu::ThreadContext& ctx = context("sync_block");
  emu::Launch& launch = *ctx.launch;
  launch.throw_if_poisoned();
  const uint64_t seen = launch.block_gate.generation();
  const uint64_t v = launch.block_count.fetch_add(1) + 1;
  const int arrived = int(v & 0xffffffffu), returned = int(v >> 32);
  if (arrived + returned == launch.threads) {
    launch.release_block_barrier(arrived, arrived - 1);
    return;
  }
  launch.add_stuck(ctx.tid, "waits at sync_block");
  if (!launch.block_gate.wait(seen, [&] { return launch.poisoned.load(); })) throw emu::Poisoned{};
}

float shfl_xor(float v, int lane_mask) {
  LONGCTX_CHECK(lane_mask >= 0 && lane_mask < emu::kWarpSize, "wo::shfl_xor: lane_mask ", lane_mask,
                ", expected 0..31");
  const emu::Slot* slots = emu::exchange(emu::WarpOp::shfl_xor, [&](emu::Slot& s) { s.v = v; });
  return slots[(lane_id() ^ lane_mask)].v;
}

// Products of bf16 values are exact in double, and so is (nearly always) their sum over k = 16;
// D is that sum plus C rounded once to float, where the tensor core accumulates in fp32 in an
// unspecified order: the two may differ by a few float ulps of the largest partial sum.
void mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  const emu::Slot* slots = emu::exchange(emu::WarpOp::mma, [&](emu::Slot& s) {
    std::memcpy(s.a, a, sizeof s.a);
    std::memcpy(s.b, b, sizeof s.b);
  });
  const int g = lane_id() / 4, t = lane_id() % 4;
  // Rows g and g+8 of A live in lanes 4g..4g+3 (a[0], a[2] and a[1], a[3]); column n of B in
  // lanes 4n..4n+3 (b[0], b[1]); this lane's d needs columns 2t and 2t+1.
  double a_rows[2][16], b_cols[2][16];
  for (int q = 0; q < 4; ++q) {
    const emu::Slot& s = slots[4 * g + q];
    for (int r = 0; r < 2; ++r) {
      a_rows[r][2 * q] = emu::bf16_lo(s.a[r]);
      a_rows[r][2 * q + 1] = emu::bf16_hi(s.a[r]);
      a_rows[r][2 * q + 8] = emu::bf16_lo(s.a[r + 2]);
      a_rows[r][2 * q + 9] = emu::bf16_hi(s.a[r + 2]);
    }
    for (int j = 0; j < 2; ++j) {
      const emu::Slot& sb = slots[4 * (2 * t + j) + q];
      b_cols[j][2 * q] = emu::bf16_lo(sb.b[0]);
      b_cols[j][2 * q + 1] = emu::bf16_hi(sb.b[0]);
      b_cols[j][2 * q + 8] = emu::bf16_lo(sb.b[1]);
      b_cols[j][2 * q + 9] = emu::bf16_hi(sb.b[1]);
    }
  }
  for (int r = 0; r < 2; ++r)
    for (int j = 0; j < 2; ++j) {
      double sum = c[2 * r + j];
      for (int k = 0; k < 16; ++k) sum += a_rows[r][k] * b_cols[j][k];
      c[2 * r + j] = float(sum);
    }
}

// atomicAdd's relaxed read-modify-write: a compare-and-swap loop on the float.
void atomic_add(float* p, float v) {
  LONGCTX_CHECK(reinterpret_cast<uintptr_t>(p) % alignof(float) == 0, "wo::atomic_add: address ",
                static_cast<const void*>(p), " expected aligned to 4 bytes");
  float old;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  float desired = old + v;
  while (!__atomic_compare_exchange(p, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    desired = old + v;
}

}  // namespace longctx::cuda::wo
