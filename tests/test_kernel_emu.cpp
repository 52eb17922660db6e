// The CPU emulator of core/warp_ops.cuh: each operation against its definition (float64
// references, exact integer totals), and misuse that must fail with an error instead of hanging.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/kernel_emu.h"

namespace wo = longctx::cuda::wo;
namespace emu = longctx::cuda::emu;

namespace {

// Runs f on another thread. A launch that hangs ends the test binary after a minute with a
// message, rather than blocking until the CTest timeout.
template <class F>
void within_a_minute(F f) {
  auto done = std::async(std::launch::async, f);
  if (done.wait_for(std::chrono::seconds(60)) == std::future_status::timeout) {
    std::fprintf(stderr, "emulated launch hung for 60 s\n");
    std::_Exit(1);
  }
  done.get();
}

// The message of the longctx::Error that f throws, or "" when it throws none.
template <class F>
std::string error_of(F f) {
  try {
    within_a_minute(f);
  } catch (const longctx::Error& e) {
    return e.what();
  }
  return "";
}

float bf16_round(float x) {
  const uint32_t u = wo::pack_bf16x2(x, 0.0f) << 16;
  float r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

std::vector<float> random_bf16(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = bf16_round(dist(rng));
  return v;
}

// Warp w computes D_w = A_w·B_w + C_w with A_w 16×K and B_w K×8 (K = 16·k_steps), C_w and D_w
// 16×8, all row-major and packed one warp after another. Each lane builds its fragments per
// the layouts documented in warp_ops.cuh.
LC_KERNEL void mma_kernel(const float* A, const float* B, const float* C, float* D, int k_steps) {
  const int w = wo::warp_id(), lane = wo::lane_id(), g = lane / 4, t = lane % 4;
  const int K = 16 * k_steps;
  A += size_t(w) * 16 * K;
  B += size_t(w) * K * 8;
  C += w * 128;
  D += w * 128;
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t],
                C[(g + 8) * 8 + 2 * t + 1]};
  for (int s = 0; s < k_steps; ++s) {
    const auto a = [&](int row, int k) { return A[row * K + 16 * s + k]; };
    const auto b = [&](int k, int col) { return B[(16 * s + k) * 8 + col]; };
    const uint32_t af[4] = {wo::pack_bf16x2(a(g, 2 * t), a(g, 2 * t + 1)),
                            wo::pack_bf16x2(a(g + 8, 2 * t), a(g + 8, 2 * t + 1)),
                            wo::pack_bf16x2(a(g, 2 * t + 8), a(g, 2 * t + 9)),
                            wo::pack_bf16x2(a(g + 8, 2 * t + 8), a(g + 8, 2 * t + 9))};
    const uint32_t bf[2] = {wo::pack_bf16x2(b(2 * t, g), b(2 * t + 1, g)),
                            wo::pack_bf16x2(b(2 * t + 8, g), b(2 * t + 9, g))};
    wo::mma_bf16_16816(c, af, bf);
  }
  D[g * 8 + 2 * t] = c[0];
  D[g * 8 + 2 * t + 1] = c[1];
  D[(g + 8) * 8 + 2 * t] = c[2];
  D[(g + 8) * 8 + 2 * t + 1] = c[3];
}

void check_mma(int k_steps, int warps) {
  std::mt19937 rng(1234 + k_steps);
  const int K = 16 * k_steps;
  const std::vector<float> A = random_bf16(size_t(warps) * 16 * K, rng);
  const std::vector<float> B = random_bf16(size_t(warps) * K * 8, rng);
  std::vector<float> C = random_bf16(size_t(warps) * 128, rng);
  for (float& x : C) x *= 1.37f;  // not bf16: C is fp32
  std::vector<float> D(C.size(), 0.0f);
  within_a_minute([&] {
    emu::launch(mma_kernel, wo::Dim3{}, 32 * warps, 0, A.data(), B.data(), C.data(), D.data(),
                k_steps);
  });
  for (int w = 0; w < warps; ++w)
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j) {
        const size_t o = size_t(w) * 128 + i * 8 + j;
        double ref = C[o], scale = std::fabs(C[o]);
        for (int k = 0; k < K; ++k) {
          const double p = double(A[(size_t(w) * 16 + i) * K + k]) * B[(size_t(w) * K + k) * 8 + j];
          ref += p;
          scale += std::fabs(p);
        }
        // One float rounding per k-step, each within 2^-24 of the running magnitude.
        EXPECT_NEAR(D[o], ref, 1e-6 * scale) << "warp " << w << " D[" << i << "][" << j << "]";
      }
}

TEST(KernelEmu, MmaMatchesFloat64) { check_mma(1, 2); }

TEST(KernelEmu, MmaChainAccumulatesOverK64) { check_mma(4, 3); }

// Each lane: the warp's sum and max by butterflies, and its partner's value for one mask.
LC_KERNEL void shfl_kernel(const float* x, float* sum, float* max, float* partner) {
  const int i = wo::thread_x();
  float s = x[i], m = x[i];
  for (int mask = 16; mask > 0; mask /= 2) {
    s += wo::shfl_xor(s, mask);
    m = std::max(m, wo::shfl_xor(m, mask));
  }
  sum[i] = s;
  max[i] = m;
  partner[i] = wo::shfl_xor(x[i], 5);
}

TEST(KernelEmu, ShflXorButterflySumAndMax) {
  const int n = 128;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> dist(-1000, 1000);
  std::vector<float> x(n), sum(n), max(n), partner(n);
  for (float& v : x) v = float(dist(rng));  // integers: every summation order is exact
  within_a_minute([&] {
    emu::launch(shfl_kernel, wo::Dim3{}, n, 0, x.data(), sum.data(), max.data(), partner.data());
  });
  for (int w = 0; w < n / 32; ++w) {
    double s = 0, m = -1e30;
    for (int l = 0; l < 32; ++l) {
      s += x[w * 32 + l];
      m = std::max(m, double(x[w * 32 + l]));
    }
    for (int l = 0; l < 32; ++l) {
      const int i = w * 32 + l;
      EXPECT_EQ(sum[i], s) << "thread " << i;
      EXPECT_EQ(max[i], m) << "thread " << i;
      EXPECT_EQ(partner[i], x[w * 32 + (l ^ 5)]) << "thread " << i;
    }
  }
}

// Rounds of: every thread writes its slot, barrier, every thread reads a slot written by a
// thread of another warp, barrier. Counts the values that were not the current round's.
LC_KERNEL void exchange_kernel(int rounds, int* wrong) {
  float* slots = reinterpret_cast<float*>(wo::dynamic_smem());
  const int i = wo::thread_x(), n = wo::block_threads();
  for (int r = 0; r < rounds; ++r) {
    slots[i] = float(r * 1000 + i);
    wo::sync_block();
    const int j = (i + 32 * (r % 3 + 1) + r) % n;
    if (slots[j] != float(r * 1000 + j)) ++wrong[i];
    wo::sync_block();
  }
}

TEST(KernelEmu, SyncBlockOrdersSharedMemoryAcrossWarps) {
  const int n = 128, rounds = 50;
  std::vector<int> wrong(n, 0);
  within_a_minute([&] {
    emu::launch(exchange_kernel, wo::Dim3{}, n, n * sizeof(float), rounds, wrong.data());
  });
  for (int i = 0; i < n; ++i) EXPECT_EQ(wrong[i], 0) << "thread " << i;
}

LC_KERNEL void index_kernel(wo::Dim3 grid, float* visits, int* bad) {
  const unsigned block = (wo::block_z() * grid.y + wo::block_y()) * grid.x + wo::block_x();
  wo::atomic_add(&visits[size_t(block) * wo::block_threads() + wo::thread_x()], 1.0f);
  if (wo::block_threads() != 64 || wo::block_x() >= grid.x || wo::block_y() >= grid.y ||
      wo::block_z() >= grid.z || reinterpret_cast<uintptr_t>(wo::dynamic_smem()) % 16 != 0)
    wo::atomic_add(reinterpret_cast<float*>(bad), 1.0f);
}

TEST(KernelEmu, EveryBlockAndThreadRunsOnce) {
  const wo::Dim3 grid{3, 4, 5};
  const int threads = 64;
  std::vector<float> visits(size_t(grid.x) * grid.y * grid.z * threads, 0.0f);
  float bad = 0;
  within_a_minute([&] {
    emu::launch(index_kernel, grid, threads, 48, grid, visits.data(), reinterpret_cast<int*>(&bad));
  });
  EXPECT_EQ(bad, 0.0f);
  for (size_t i = 0; i < visits.size(); ++i) EXPECT_EQ(visits[i], 1.0f) << "index " << i;
}

TEST(KernelEmu, AtomicAddFromManyThreadsIsExact) {
  const int blocks = 8, threads = 256, repeats = 16;
  float total = 0;
  within_a_minute([&] {
    emu::launch(wo::Dim3{blocks}, threads, 0, [&] {
      for (int r = 0; r < repeats; ++r) wo::atomic_add(&total, float(wo::thread_x() % 7 + 1));
    });
  });
  double expected = 0;
  for (int t = 0; t < threads; ++t) expected += blocks * repeats * (t % 7 + 1);
  EXPECT_EQ(double(total), expected);  // integers below 2^24: every partial sum is exact
}

TEST(KernelEmu, UninitialisedSharedMemoryIsNaNInEveryBlock) {
  const int threads = 64, blocks = 3;
  std::vector<uint32_t> seen(size_t(blocks) * threads, 0);
  within_a_minute([&] {
    emu::launch(wo::Dim3{blocks}, threads, threads * sizeof(float), [&] {
      float* smem = reinterpret_cast<float*>(wo::dynamic_smem());
      const int i = wo::thread_x();
      std::memcpy(&seen[wo::block_x() * threads + i], &smem[i], sizeof(float));
      wo::sync_block();
      smem[i] = 1.0f;  // must not leak into the next block
    });
  });
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 0xFFFFFFFFu) << "index " << i;
}

TEST(KernelEmu, ThrowingThreadWakesThreadsAtBarriers) {
  for (int round = 0; round < 3; ++round) {
    const std::string msg = error_of([&] {
      emu::launch(wo::Dim3{4}, 128, 0, [&] {
        wo::sync_block();
        // The rest of warp 2 then waits at the shuffle, the other warps at the second barrier.
        if (wo::block_x() == 2 && wo::thread_x() == 77) LONGCTX_CHECK(false, "thread 77 failed");
        wo::shfl_xor(1.0f, 1);
        wo::sync_block();
      });
    });
    EXPECT_NE(msg.find("thread 77 failed"), std::string::npos) << msg;
  }
  // The emulator is usable after a failed launch.
  float total = 0;
  within_a_minute([&] { emu::launch(wo::Dim3{2}, 64, 0, [&] { wo::atomic_add(&total, 1.0f); }); });
  EXPECT_EQ(total, 128.0f);
}

TEST(KernelEmu, NonErrorExceptionsPropagate) {
  EXPECT_THROW(within_a_minute([] {
                 emu::launch(wo::Dim3{}, 32, 0, [] {
                   if (wo::lane_id() == 3) throw std::out_of_range("lane 3");
                   wo::shfl_xor(0.0f, 3);
                 });
               }),
               std::out_of_range);
}

TEST(KernelEmu, WarpOperationAfterALaneReturnedFails) {
  const std::string msg = error_of([] {
    emu::launch(wo::Dim3{}, 64, 0, [] {
      if (wo::thread_x() == 37) return;
      wo::shfl_xor(1.0f, 1);
    });
  });
  EXPECT_NE(msg.find("after lane 5 of its warp returned"), std::string::npos) << msg;
  const std::string mma_msg = error_of([] {
    emu::launch(wo::Dim3{}, 32, 0, [] {
      if (wo::lane_id() == 0) return;
      float c[4] = {};
      const uint32_t a[4] = {}, b[2] = {};
      wo::mma_bf16_16816(c, a, b);
    });
  });
  EXPECT_NE(mma_msg.find("mma_bf16_16816"), std::string::npos) << mma_msg;
  EXPECT_NE(mma_msg.find("after lane 0 of its warp returned"), std::string::npos) << mma_msg;
}

TEST(KernelEmu, ReturnedThreadsCountAsArrivedAtSyncBlock) {
  const int threads = 128;
  std::vector<int> passed(threads, 0);
  within_a_minute([&] {
    emu::launch(wo::Dim3{2}, threads, 0, [&] {
      if (wo::warp_id() == 1) return;  // whole warps return early, as a kernel may do
      wo::sync_block();
      wo::sync_block();
      ++passed[wo::thread_x()];
    });
  });
  for (int i = 0; i < threads; ++i) EXPECT_EQ(passed[i], i / 32 == 1 ? 0 : 2) << "thread " << i;
}

TEST(KernelEmu, DivergentBarriersFailInsteadOfHanging) {
  const std::string msg = error_of([] {
    emu::launch(wo::Dim3{}, 64, 0, [] {
      if (wo::thread_x() == 40)
        wo::sync_block();
      else if (wo::warp_id() == 1)
        wo::shfl_xor(1.0f, 1);
      else
        wo::sync_block();
    });
  });
  EXPECT_NE(msg.find("deadlock"), std::string::npos) << msg;
  const std::string mixed = error_of([] {
    emu::launch(wo::Dim3{}, 32, 0, [] {
      float c[4] = {};
      const uint32_t a[4] = {}, b[2] = {};
      if (wo::lane_id() == 9)
        wo::shfl_xor(1.0f, 1);
      else
        wo::mma_bf16_16816(c, a, b);
    });
  });
  EXPECT_NE(mixed.find("different warp operations"), std::string::npos) << mixed;
}

TEST(KernelEmu, RejectsInvalidLaunchesAndCallsOutsideKernels) {
  const auto nothing = [] {};
  EXPECT_NE(error_of([&] { emu::launch(wo::Dim3{}, 48, 0, nothing); }).find("threads per block 48"),
            std::string::npos);
  EXPECT_NE(error_of([&] { emu::launch(wo::Dim3{}, 2048, 0, nothing); }).find("2048"),
            std::string::npos);
  EXPECT_NE(error_of([&] { emu::launch(wo::Dim3{0}, 32, 0, nothing); }).find("grid (0,1,1)"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              emu::launch(wo::Dim3{}, 32, 300 * 1024, nothing);
            }).find("dynamic shared memory"),
            std::string::npos);
  EXPECT_NE(error_of([] { wo::thread_x(); }).find("outside a kernel"), std::string::npos);
  EXPECT_NE(error_of([&] {
              emu::launch(wo::Dim3{}, 32, 0, [&] { emu::launch(wo::Dim3{}, 32, 0, nothing); });
            }).find("from inside a kernel"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              emu::launch(wo::Dim3{}, 32, 0, [] { wo::shfl_xor(1.0f, 32); });
            }).find("lane_mask 32"),
            std::string::npos);
}

// The shape of a tiled attention kernel's inner loop: per step, each of 4 warps does 8 mma and
// 4 shuffles, then the block synchronises. Checks the results and reports the cost per warp
// operation.
TEST(KernelEmu, ManyWarpOperationsStayCorrect) {
  const int blocks = 2, threads = 128, steps = 10;
  const int mma_per_step = 8, shfl_per_step = 4;
  std::vector<float> out(size_t(blocks) * threads * 5, 0.0f);
  const auto start = std::chrono::steady_clock::now();
  within_a_minute([&] {
    emu::launch(wo::Dim3{blocks}, threads, 0, [&] {
      // A = all ones (bf16 1.0 = 0x3f80), B = the k-step's value: each mma adds 16·(s+1) to
      // every element of c.
      const uint32_t a[4] = {0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u};
      float c[4] = {}, s_sum = 0;
      for (int s = 0; s < steps; ++s) {
        const uint32_t v = wo::pack_bf16x2(float(s % 4 + 1), float(s % 4 + 1));
        const uint32_t b[2] = {v, v};
        for (int m = 0; m < mma_per_step; ++m) wo::mma_bf16_16816(c, a, b);
        float x = float(wo::lane_id());
        for (int k = 0; k < shfl_per_step; ++k) x += wo::shfl_xor(x, 1 << k);
        s_sum += x;
        wo::sync_block();
      }
      float* o = &out[(size_t(wo::block_x()) * threads + wo::thread_x()) * 5];
      std::copy(c, c + 4, o);
      o[4] = s_sum;
    });
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double c_expected = 0, shfl_expected = 0;
  for (int s = 0; s < steps; ++s) c_expected += mma_per_step * 16.0 * (s % 4 + 1);
  for (int i = 0; i < blocks * threads; ++i) {
    const int lane = i % 32;
    // After xor-shuffles over bits 0..3 each lane holds the sum of its group of 16.
    const int group = lane / 16 * 16;
    shfl_expected = steps * (16 * group + 120.0);
    for (int e = 0; e < 4; ++e) ASSERT_EQ(out[size_t(i) * 5 + e], c_expected) << "thread " << i;
    ASSERT_EQ(out[size_t(i) * 5 + 4], shfl_expected) << "thread " << i;
  }
  const double warp_ops = double(blocks) * (threads / 32) * steps * (mma_per_step + shfl_per_step);
  std::printf(
      "kernel emulator: %d blocks of %d threads, %.0f warp operations and %d barriers "
      "in %.3f s: %.1f us per warp operation (all costs included)\n",
      blocks, threads, warp_ops, blocks * steps, seconds, seconds / warp_ops * 1e6);
}

// Blocks run one after another, x fastest; reports the cost of a block (128 threads, one
// barrier).
TEST(KernelEmu, BlocksRunInOrder) {
  const wo::Dim3 grid{2, 2, 2};
  std::vector<unsigned> order;
  const auto start = std::chrono::steady_clock::now();
  within_a_minute([&] {
    emu::launch(grid, 128, 1024, [&] {
      wo::sync_block();
      if (wo::thread_x() == 0)
        order.push_back((wo::block_z() * grid.y + wo::block_y()) * grid.x + wo::block_x());
    });
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(order.size(), size_t(grid.x) * grid.y * grid.z);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i);
  std::printf("kernel emulator: %zu blocks of 128 threads in %.3f s: %.0f us per block\n",
              order.size(), seconds, seconds / order.size() * 1e6);
}

}  // namespace
