// Every Comm collective over MPI against values each rank can compute alone, for 2 and 4
// ranks (and any other count), plus the counters and communicator splits.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "core/comm.h"

namespace longctx {
namespace {

// What rank r contributes at index i: distinct per (rank, index), exact in float.
float value(int r, int64_t i) { return float(1000 * r + i); }

TEST(Comm, Collectives) {
  auto c = make_mpi_world_comm();
  const int n = c->size(), me = c->rank();
  const int64_t count = 5;
  std::vector<float> buf(count * n);
  for (int64_t i = 0; i < count * n; ++i) buf[i] = value(me, i);

  std::vector<float> sum(buf);
  c->all_reduce_sum(sum.data(), int64_t(sum.size()));
  for (int64_t i = 0; i < count * n; ++i) {
    float want = 0;
    for (int r = 0; r < n; ++r) want += value(r, i);
    EXPECT_EQ(sum[i], want) << "all_reduce " << i;
  }

  std::vector<float> part(count);
  c->reduce_scatter_sum(buf.data(), part.data(), count);
  for (int64_t i = 0; i < count; ++i) EXPECT_EQ(part[i], sum[me * count + i]) << "reduce_scatter";

  std::vector<float> all(count * n);
  c->all_gather(buf.data(), all.data(), count);
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < count; ++i) EXPECT_EQ(all[r * count + i], value(r, i)) << "all_gather";

  std::vector<float> got(count * n);
  c->all_to_all(buf.data(), got.data(), count);
  for (int r = 0; r < n; ++r)  // block r came from rank r's block `me`
    for (int64_t i = 0; i < count; ++i)
      EXPECT_EQ(got[r * count + i], value(r, me * count + i)) << "all_to_all";

  std::vector<double> mine{double(me)}, from_left(1);
  c->send_recv(mine.data(), 1, (me + 1) % n, from_left.data(), 1, (me + n - 1) % n);
  EXPECT_EQ(from_left[0], double((me + n - 1) % n)) << "ring send_recv";

  std::vector<int64_t> b{me == n - 1 ? 42 : 0};
  c->broadcast(b.data(), 1, n - 1);
  EXPECT_EQ(b[0], 42);
  c->barrier();
}

TEST(Comm, CountsBytesAndSplits) {
  auto c = make_mpi_world_comm();
  const int n = c->size(), me = c->rank();
  c->take_stats();
  std::vector<float> x(1000, 1.0f);
  c->all_reduce_sum(x.data(), 1000);
  const auto s = c->take_stats();
  ASSERT_EQ(s.count("all_reduce"), 1u);
  EXPECT_EQ(s.at("all_reduce").calls, 1);
  EXPECT_EQ(s.at("all_reduce").bytes, 2 * (n - 1) * 4000 / n) << "a ring's bytes per rank";
  EXPECT_TRUE(c->take_stats().empty());

  auto half = c->split(me % 2, me);  // even and odd ranks
  EXPECT_EQ(half->size(), (n + 1 - me % 2) / 2);
  int64_t id = me;
  half->all_reduce_sum(&id, 1);
  int64_t want = 0;
  for (int r = me % 2; r < n; r += 2) want += r;
  EXPECT_EQ(id, want);
}

TEST(Comm, SelfCommIsTheIdentity) {
  auto c = make_self_comm();
  std::vector<float> a{1, 2, 3}, b(3);
  c->all_reduce_sum(a.data(), 3);
  c->all_gather(a.data(), b.data(), 3);
  EXPECT_EQ(a, b);
  EXPECT_EQ(c->split(0, 0)->size(), 1);
}

}  // namespace
}  // namespace longctx
