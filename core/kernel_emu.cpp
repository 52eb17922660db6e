// The CPU emulator of core/warp_ops.cuh (see kernel_emu.h for what a kernel sees).
//
// Why fibers, not one OS thread per kernel thread: a warp operation needs every lane to run
// between two operations, so it costs at least 32 context switches. Between OS threads each is
// a futex wake-up and a trip through the scheduler; on a 2-core machine shared with compilers
// that measured about 1 ms per warp operation. Here the block's threads are Boost.Context fibers
// (own stacks, switched by a few instructions) that the launching thread runs one at a time: a
// thread runs until it waits at sync_block or a warp operation, or returns, then the next one
// runs. Deterministic: a failing test fails the same way every run. Measured on the 2-core build
// machine under a load of 4-5: about 1.5-3 us per shfl_xor and 3-5 us per mma (32 lanes), 8-12 us
// per sync_block of 128 threads, 25-35 us to start a block of 128 threads.
#include "core/kernel_emu.h"

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "core/error.h"

namespace longctx::cuda::emu {
namespace {

namespace ctx = boost::context;

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;
// The most dynamic shared memory a block can have on sm_90 (after opting in above 48 KiB).
constexpr size_t kMaxSmemBytes = 227 * 1024;
constexpr size_t kStackBytes = 512 * 1024;  // a kernel thread's stack (Stack below)

// ---- Kernel threads' stacks.

// A kernel thread's stack, mapped once per launch and run on by that thread's fiber in every
// block (a fiber is cheap to make; mapping a stack is not). Reserved but touched only as deep as
// it goes, above a guard page that faults on access, so that an overflow crashes instead of
// corrupting another thread's stack.
class Stack {
 public:
  Stack() {
    try {
      context_ = ctx::protected_fixedsize_stack(kStackBytes).allocate();
    } catch (const std::bad_alloc&) {
      throw Error(str("emu::launch: could not reserve ", kStackBytes,
                      " bytes for a kernel thread's stack"));
    }
  }
  ~Stack() { ctx::protected_fixedsize_stack(kStackBytes).deallocate(context_); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  // A fiber's stack allocator that lends it this stack: the fiber hands it back, still mapped,
  // when it finishes.
  struct Lender {
    ctx::stack_context context;
    ctx::stack_context allocate() const { return context; }
    void deallocate(ctx::stack_context&) noexcept {}
  };
  Lender lender() const { return Lender{context_}; }

 private:
  ctx::stack_context context_;
};

// ---- Kernel threads and their barriers.

// Thrown where a thread resumes after another thread of the launch failed, so that its stack
// unwinds; caught at the bottom of that stack, never seen by launch()'s caller.
struct Poisoned {};

enum class Waits { nothing, sync_block, shfl_xor, mma };

const char* name(Waits w) {
  switch (w) {
    case Waits::sync_block:
      return "sync_block";
    case Waits::shfl_xor:
      return "shfl_xor";
    case Waits::mma:
      return "mma_bf16_16816";
    case Waits::nothing:
      break;
  }
  return "nothing";
}

struct Launch;

struct Thread {
  Launch* launch;
  int tid;
  ctx::fiber fiber;  // the kernel thread while it is suspended
  Stack stack;
  bool runnable = false;
  bool finished = false;  // returned, or unwound after an error
  Waits waits = Waits::nothing;
};

// One lane's operands of a warp operation and, once the last lane arrived, its result.
struct Lane {
  float v;
  int lane_mask;
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

struct Warp {
  int arrived = 0;
  Waits op = Waits::nothing;  // what the arrived lanes wait at
  int returned = 0;
  int first_returned = -1;
  Lane lanes[kWarpSize];
};

thread_local Thread* t_current = nullptr;

struct Launch {
  Launch(wo::Dim3 g, int n, size_t smem, const std::function<void()>& b)
      : grid(g),
        threads(n),
        body(b),
        n_blocks(uint64_t(g.x) * g.y * g.z),
        smem_storage((smem + 15) / 16),
        warps(size_t(n / kWarpSize)),
        pool(size_t(n)) {
    for (int i = 0; i < n; ++i) {
      pool[size_t(i)].launch = this;
      pool[size_t(i)].tid = i;
    }
  }

  const wo::Dim3 grid;
  const int threads;
  const std::function<void()>& body;
  const uint64_t n_blocks;
  unsigned bx = 0, by = 0, bz = 0;
  struct alignas(16) Chunk {
    unsigned char bytes[16];
  };
  std::vector<Chunk> smem_storage;
  std::vector<Warp> warps;
  std::vector<Thread> pool;
  ctx::fiber scheduler;  // the suspended scheduler, while a kernel thread runs
  int sync_arrived = 0;
  uint64_t sync_phase = 0;  // sync_block releases so far
  int returned = 0;
  bool poisoned = false;
  std::exception_ptr error;

  unsigned char* smem() { return reinterpret_cast<unsigned char*>(smem_storage.data()); }

  std::string where(int tid) const {
    return str("thread ", tid, " of block (", bx, ",", by, ",", bz, ")");
  }

  void run() {
    for (uint64_t b = 0; b < n_blocks && !poisoned; ++b) run_block(b);
    if (error) std::rethrow_exception(error);
  }

  void run_block(uint64_t b) {
    bx = unsigned(b % grid.x);
    by = unsigned(b / grid.x % grid.y);
    bz = unsigned(b / grid.x / grid.y);
    std::memset(smem(), 0xFF, smem_storage.size() * sizeof(Chunk));
    sync_arrived = returned = 0;
    for (Warp& w : warps) w = Warp{};
    for (Thread& t : pool) {
      t.fiber = ctx::fiber(std::allocator_arg, t.stack.lender(), [&t](ctx::fiber&& scheduler) {
        return thread_main(t, std::move(scheduler));
      });
      t.runnable = true;
      t.finished = false;
      t.waits = Waits::nothing;
    }
    // One warp at a time runs until every lane of it waits at sync_block or has returned, its
    // lanes in turn, each up to its next warp operation. Warps (and lanes) go in ascending order
    // in even blocks, descending in odd ones. So only sync_block orders the warps' accesses to
    // shared memory, as on the GPU: a missing one shows as a read of shared memory that another
    // warp has not written yet (or has already overwritten), in one block parity or the other.
    const bool ascending = b % 2 == 0;
    const int n_warps = threads / kWarpSize;
    while (!poisoned) {
      bool ran = false;
      for (int i = 0; i < n_warps && !poisoned; ++i) {
        const uint64_t phase = sync_phase;
        while (sync_phase == phase && run_lanes(ascending ? i : n_warps - 1 - i, ascending))
          ran = true;
        if (sync_phase != phase) break;  // the next phase starts from the first warp
      }
      if (poisoned) break;
      if (std::all_of(pool.begin(), pool.end(), [](const Thread& t) { return t.finished; })) return;
      if (!ran) fail(std::make_exception_ptr(Error(deadlock_message())));
    }
    // Unwinds the stacks of the threads that started, so that their destructors run.
    for (Thread& t : pool)
      if (!t.finished) resume(t);
  }

  // Resumes the runnable lanes of warp `w` once each, until one completes a sync_block or
  // fails; false if none was runnable.
  bool run_lanes(int w, bool ascending) {
    bool ran = false;
    const uint64_t phase = sync_phase;
    for (int i = 0; i < kWarpSize && sync_phase == phase && !poisoned; ++i) {
      Thread& t = pool[size_t(w * kWarpSize + (ascending ? i : kWarpSize - 1 - i))];
      if (t.finished || !t.runnable) continue;
      resume(t);
      ran = true;
    }
    return ran;
  }

  void resume(Thread& t) {
    t_current = &t;
    t.fiber = std::move(t.fiber).resume();
    t_current = nullptr;
  }

  // Called by the running thread: back to the scheduler, and on from there when resumed.
  void suspend() {
    scheduler = std::move(scheduler).resume();
    if (poisoned) throw Poisoned{};
  }

  void fail(std::exception_ptr e) {
    if (!error) error = e;
    poisoned = true;
  }

  // The bottom of every kernel thread's stack. Catches everything: an exception must not leave
  // a fiber.
  static ctx::fiber thread_main(Thread& t, ctx::fiber&& scheduler) {
    Launch& l = *t.launch;
    l.scheduler = std::move(scheduler);
    try {
      if (l.poisoned) throw Poisoned{};  // a thread that never ran before the launch failed
      l.body();
      l.thread_returned(t);
    } catch (const Poisoned&) {
    } catch (...) {
      l.fail(std::current_exception());
    }
    t.finished = true;
    return std::move(l.scheduler);  // the fiber ends, leaving its stack to the thread
  }

  void thread_returned(Thread& t) {
    ++returned;
    Warp& w = warps[size_t(t.tid / kWarpSize)];
    if (w.returned++ == 0) w.first_returned = t.tid % kWarpSize;
    // Lanes waiting at a warp operation can never complete it: they resume to report that.
    for (int i = 0; i < kWarpSize; ++i) {
      Thread& lane = pool[size_t(t.tid / kWarpSize * kWarpSize + i)];
      if (lane.waits == Waits::shfl_xor || lane.waits == Waits::mma) lane.runnable = true;
    }
    if (sync_arrived > 0 && sync_arrived + returned == threads) release_sync_block();
  }

  void release_sync_block() {
    sync_arrived = 0;
    ++sync_phase;
    for (Thread& t : pool)
      if (t.waits == Waits::sync_block) {
        t.waits = Waits::nothing;
        t.runnable = true;
      }
  }

  std::string deadlock_message() const {
    std::string s = str("emulated kernel deadlock in block (", bx, ",", by, ",", bz,
                        "): every thread that has not returned waits at a barrier that cannot "
                        "complete (the threads disagree on which barrier comes next).");
    for (Waits w : {Waits::sync_block, Waits::shfl_xor, Waits::mma}) {
      std::string ids;
      for (int i = 0; i < threads; ++i) {
        if (pool[size_t(i)].finished || pool[size_t(i)].waits != w) continue;
        int j = i;
        while (j + 1 < threads && !pool[size_t(j + 1)].finished && pool[size_t(j + 1)].waits == w)
          ++j;
        ids += str(ids.empty() ? "" : ",", i, j > i ? str("-", j) : "");
        i = j;
      }
      if (!ids.empty()) s += str(" Threads at ", name(w), ": ", ids, ".");
    }
    return s + str(" Returned: ", returned, " of ", threads, ".");
  }
};

Thread& current(const char* fn) {
  LONGCTX_CHECK(t_current != nullptr, "wo::", fn,
                "() called outside a kernel run by emu::launch (expected a kernel thread)");
  return *t_current;
}

// Hands the lane's operands to its warp; the last lane to arrive runs `compute` over all 32
// lanes. Returns the calling lane's entry, holding its result.
template <class Fill, class Compute>
const Lane& warp_operation(Waits op, Fill fill, Compute compute) {
  Thread& t = current(name(op));
  Launch& l = *t.launch;
  if (l.poisoned) throw Poisoned{};
  Warp& w = l.warps[size_t(t.tid / kWarpSize)];
  Thread* warp_threads = &l.pool[size_t(t.tid / kWarpSize * kWarpSize)];
  const int lane = t.tid % kWarpSize;
  const auto lane_returned = [&] {
    return Error(str("warp operation ", name(op), " by ", l.where(t.tid), " after lane ",
                     w.first_returned,
                     " of its warp returned from the kernel: every lane "
                     "of the warp must take part (undefined on the GPU)"));
  };
  if (w.returned > 0) throw lane_returned();
  if (w.arrived > 0 && w.op != op) {
    int other = 0;
    while (warp_threads[other].waits != w.op) ++other;
    throw Error(str("lanes of one warp called different warp operations: ", l.where(t.tid),
                    " called ", name(op), " while lane ", other, " waits at ", name(w.op)));
  }
  w.op = op;
  fill(w.lanes[lane]);
  t.waits = op;
  if (++w.arrived == kWarpSize) {
    compute(w.lanes);
    w.arrived = 0;
    for (int i = 0; i < kWarpSize; ++i) {
      warp_threads[i].waits = Waits::nothing;
      warp_threads[i].runnable = true;
    }
  } else {
    t.runnable = false;
  }
  l.suspend();
  if (t.waits == op) throw lane_returned();  // resumed by a lane's return, not by completion
  return w.lanes[lane];
}

float bf16_lo(uint32_t u) {
  const uint32_t bits = u << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bf16_hi(uint32_t u) {
  const uint32_t bits = u & 0xffff0000u;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// D = A·B + C for the warp, from and to the lanes' fragments (layouts in warp_ops.cuh), computed
// in double (bf16 products are exact, and so is their sum unless their magnitudes span more than
// about 2^30) and rounded once to float. The tensor core accumulates in fp32 in an unspecified
// order, so its results differ from these by a few float ulps of the largest partial sum.
void mma_16816(Lane* lanes) {
  double A[16][16], B[16][8];
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const int g = lane / 4, t = lane % 4;
    const Lane& l = lanes[lane];
    for (int h = 0; h < 2; ++h) {  // h: rows g, g+8 of A; rows 2t.., 2t+8.. of B
      A[g + 8 * h][2 * t] = bf16_lo(l.a[h]);
      A[g + 8 * h][2 * t + 1] = bf16_hi(l.a[h]);
      A[g + 8 * h][2 * t + 8] = bf16_lo(l.a[h + 2]);
      A[g + 8 * h][2 * t + 9] = bf16_hi(l.a[h + 2]);
      B[2 * t + 8 * h][g] = bf16_lo(l.b[h]);
      B[2 * t + 8 * h + 1][g] = bf16_hi(l.b[h]);
    }
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const int g = lane / 4, t = lane % 4;
    float* c = lanes[lane].c;  // c[2h + j] = C[g + 8h][2t + j]
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 2; ++j) {
        double sum = c[2 * h + j];
        for (int k = 0; k < 16; ++k) sum += A[g + 8 * h][k] * B[k][2 * t + j];
        c[2 * h + j] = float(sum);
      }
  }
}

}  // namespace

void launch(wo::Dim3 grid, int threads, size_t smem_bytes, const std::function<void()>& body) {
  LONGCTX_CHECK(t_current == nullptr, "emu::launch called from inside a kernel (",
                t_current->launch->where(t_current->tid), "): expected a host-side launch");
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
  Launch(grid, threads, smem_bytes, body).run();
}

}  // namespace longctx::cuda::emu

namespace longctx::cuda::wo {

using emu::current;

int thread_x() { return current("thread_x").tid; }
int block_threads() { return current("block_threads").launch->threads; }
unsigned block_x() { return current("block_x").launch->bx; }
unsigned block_y() { return current("block_y").launch->by; }
unsigned block_z() { return current("block_z").launch->bz; }
unsigned char* dynamic_smem() { return current("dynamic_smem").launch->smem(); }

void sync_block() {
  emu::Thread& t = current("sync_block");
  emu::Launch& l = *t.launch;
  if (l.poisoned) throw emu::Poisoned{};
  t.waits = emu::Waits::sync_block;
  if (++l.sync_arrived + l.returned == l.threads)
    l.release_sync_block();  // and yield, so that the next phase starts with the first warp
  else
    t.runnable = false;
  l.suspend();
}

float shfl_xor(float v, int lane_mask) {
  LONGCTX_CHECK(lane_mask >= 0 && lane_mask < emu::kWarpSize, "wo::shfl_xor: lane_mask ", lane_mask,
                ", expected 0..31");
  const emu::Lane& mine = emu::warp_operation(
      emu::Waits::shfl_xor,
      [&](emu::Lane& l) {
        l.v = v;
        l.lane_mask = lane_mask;
      },
      [](emu::Lane* lanes) {
        float in[emu::kWarpSize];
        for (int i = 0; i < emu::kWarpSize; ++i) in[i] = lanes[i].v;
        for (int i = 0; i < emu::kWarpSize; ++i) lanes[i].v = in[i ^ lanes[i].lane_mask];
      });
  return mine.v;
}

void mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  const emu::Lane& mine = emu::warp_operation(
      emu::Waits::mma,
      [&](emu::Lane& l) {
        std::memcpy(l.a, a, sizeof l.a);
        std::memcpy(l.b, b, sizeof l.b);
        std::memcpy(l.c, c, sizeof l.c);
      },
      emu::mma_16816);
  std::memcpy(c, mine.c, sizeof mine.c);
}

// atomicAdd's relaxed read-modify-write, a compare-and-swap loop: atomic also against launches
// running on other host threads.
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
