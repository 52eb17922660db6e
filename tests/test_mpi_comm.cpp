// Every Comm collective over MPI against values each rank can compute alone, for 2 and 4
// ranks (and any other count), plus the counters and communicator splits.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "core/comm.h"
#include "core/ring_collectives.h"

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

// Our ring algorithms against MPI's collectives, at sizes that do and do not divide into the
// ranks (and smaller than the ranks), in float and double; the bytes they send are exactly the
// bandwidth-optimal ones when the size divides.
template <class T>
void check_ring(Comm& c, int64_t n) {
  SCOPED_TRACE(testing::Message() << "n " << n << " sizeof " << sizeof(T));
  const int N = c.size(), me = c.rank();
  std::vector<T> buf(static_cast<size_t>(n)), want;
  for (int64_t i = 0; i < n; ++i) buf[i] = T(value(me, i)) / T(3);  // not exact: order matters
  want = buf;
  c.all_reduce_sum(want.data(), n);
  std::vector<T> got(buf);
  c.take_stats();
  ring_all_reduce_sum(c, got.data(), n);
  const auto stats = c.take_stats();
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(got[i], want[i], 1e-5 * std::abs(want[i])) << i;
  std::vector<T> root(got);  // a chunk is summed on one rank only: every rank gets its bits
  c.broadcast(root.data(), n, 0);
  EXPECT_EQ(root, got);
  if (N > 1 && n % N == 0) {
    EXPECT_EQ(stats.at("send_recv").bytes, 2 * (N - 1) * n / N * int64_t(sizeof(T)));
  }

  const int64_t count = n / N + 1;
  std::vector<T> send(static_cast<size_t>(count * N)), part(static_cast<size_t>(count));
  for (int64_t i = 0; i < count * N; ++i) send[i] = T(value(me, i));
  ring_reduce_scatter_sum(c, send.data(), part.data(), count);
  for (int64_t i = 0; i < count; ++i) {
    T w = 0;
    for (int r = 0; r < N; ++r) w += T(value(r, me * count + i));
    EXPECT_EQ(part[i], w) << "reduce_scatter " << i;
  }
  std::vector<T> all(static_cast<size_t>(count * N));
  ring_all_gather(c, part.data(), all.data(), count);
  for (int r = 0; r < N; ++r)
    for (int64_t i = 0; i < count; ++i) {
      T w = 0;
      for (int q = 0; q < N; ++q) w += T(value(q, r * count + i));
      EXPECT_EQ(all[r * count + i], w) << "all_gather " << r << " " << i;
    }
}

TEST(Comm, RingCollectivesMatchMpi) {
  auto c = make_mpi_world_comm();
  for (int64_t n : {1, 3, 4, 12, 1000, 100003}) {
    check_ring<float>(*c, n);
    check_ring<double>(*c, n);
  }
}

TEST(Comm, StartedAllReduceEqualsBlocking) {
  auto c = make_mpi_world_comm();
  const int me = c->rank();
  std::vector<float> a(5000), b(3);
  for (size_t i = 0; i < a.size(); ++i) a[i] = value(me, int64_t(i));
  for (size_t i = 0; i < b.size(); ++i) b[i] = value(me, int64_t(i) + 7);
  std::vector<float> wa(a), wb(b);
  c->all_reduce_sum(wa.data(), int64_t(wa.size()));
  c->all_reduce_sum(wb.data(), int64_t(wb.size()));
  c->take_stats();
  c->all_reduce_sum_start(a.data(), int64_t(a.size()));
  c->all_reduce_sum_start(b.data(), int64_t(b.size()));
  c->progress();
  c->wait_all();
  EXPECT_EQ(a, wa);
  EXPECT_EQ(b, wb);
  EXPECT_EQ(c->take_stats().at("all_reduce").calls, 2) << "progress and wait are not calls";
  c->wait_all();  // nothing pending: returns at once
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
