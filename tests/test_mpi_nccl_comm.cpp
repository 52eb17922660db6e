// NcclComm across the ranks of mpirun, one GPU each (labels `mpi` and `gpu`): every collective
// against values each rank can compute alone, as test_mpi_comm does for MPI. Skipped on every
// rank when the node has fewer GPUs than ranks, or in a build without CUDA.
#include <gtest/gtest.h>

#include <vector>

#include "core/comm.h"
#include "core/cuda_env.h"
#include "core/mpi_env.h"

#if LONGCTX_HAVE_CUDA
#include "tests/device_vec.h"
#endif

namespace longctx {
namespace {

#if LONGCTX_HAVE_CUDA

using test::DeviceVec;

// What rank r contributes at index i: distinct per (rank, index), exact in float.
float value(int r, int64_t i) { return float(1000 * r + i); }

class NcclRanks : public testing::Test {
 protected:
  void SetUp() override {
    // The same answer on every rank of one node, so that no rank waits for a skipped one.
    if (cuda_device_count() < world_->size())
      GTEST_SKIP() << cuda_device_count() << " CUDA devices for " << world_->size() << " ranks";
    comm_ = make_nccl_comm(*world_, local_rank());
  }
  std::unique_ptr<Comm> world_ = make_mpi_world_comm();
  std::unique_ptr<Comm> comm_;
};

TEST_F(NcclRanks, Collectives) {
  Comm& c = *comm_;
  const int n = c.size(), me = c.rank();
  ASSERT_EQ(n, world_->size());
  ASSERT_EQ(me, world_->rank());
  const int64_t count = 5;
  std::vector<float> x(count * n);
  for (int64_t i = 0; i < count * n; ++i) x[i] = value(me, i);

  DeviceVec<float> sum(x);
  c.all_reduce_sum(sum.get(), count * n);
  const std::vector<float> total = sum.host();
  for (int64_t i = 0; i < count * n; ++i) {
    float want = 0;
    for (int r = 0; r < n; ++r) want += value(r, i);
    EXPECT_EQ(total[i], want) << "all_reduce " << i;
  }

  DeviceVec<float> send{x}, part{std::vector<float>(count)}, all{std::vector<float>(count * n)};
  c.reduce_scatter_sum(send.get(), part.get(), count);
  const std::vector<float> mine = part.host();
  for (int64_t i = 0; i < count; ++i) EXPECT_EQ(mine[i], total[me * count + i]) << "reduce_scatter";

  c.all_gather(send.get(), all.get(), count);  // rank r's first `count` values
  std::vector<float> got = all.host();
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < count; ++i) EXPECT_EQ(got[r * count + i], value(r, i)) << "all_gather";

  c.all_to_all(send.get(), all.get(), count);
  got = all.host();
  for (int r = 0; r < n; ++r)  // block r came from rank r's block `me`
    for (int64_t i = 0; i < count; ++i)
      EXPECT_EQ(got[r * count + i], value(r, me * count + i)) << "all_to_all";

  DeviceVec<double> rank_id(std::vector<double>{double(me)}), from_left(std::vector<double>{-1});
  c.send_recv(rank_id.get(), 1, (me + 1) % n, from_left.get(), 1, (me + n - 1) % n);
  EXPECT_EQ(from_left.host()[0], double((me + n - 1) % n)) << "ring send_recv";

  DeviceVec<int64_t> b(std::vector<int64_t>{me == n - 1 ? 42 : 0});
  c.broadcast(b.get(), 1, n - 1);
  EXPECT_EQ(b.host()[0], 42);
  c.barrier();
}

TEST_F(NcclRanks, CountsBytesAndSplits) {
  Comm& c = *comm_;
  const int n = c.size(), me = c.rank();
  c.take_stats();
  DeviceVec<float> x(std::vector<float>(1000, 1.0f));
  c.all_reduce_sum(x.get(), 1000);
  const auto s = c.take_stats();
  ASSERT_EQ(s.count("all_reduce"), 1u);
  EXPECT_EQ(s.at("all_reduce").calls, 1);
  EXPECT_EQ(s.at("all_reduce").bytes, 2 * (n - 1) * 4000 / n) << "a ring's bytes per rank";
  EXPECT_EQ(x.host(), std::vector<float>(1000, float(n)));

  auto half = c.split(me % 2, me);  // even and odd ranks
  EXPECT_EQ(half->backend(), "nccl");
  EXPECT_EQ(half->size(), (n + 1 - me % 2) / 2);
  EXPECT_EQ(half->rank(), me / 2);
  DeviceVec<int64_t> id(std::vector<int64_t>{me});
  half->all_reduce_sum(id.get(), 1);
  int64_t want = 0;
  for (int r = me % 2; r < n; r += 2) want += r;
  EXPECT_EQ(id.host()[0], want);
}

#else

TEST(NcclRanks, Collectives) { GTEST_SKIP() << "built without CUDA (LONGCTX_CUDA off)"; }

#endif

}  // namespace
}  // namespace longctx
