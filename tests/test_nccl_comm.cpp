// NcclComm on one rank against SelfComm on host buffers (label `gpu`: skipped without a CUDA
// device or in a build without CUDA), and what runs everywhere: make_nccl_comm's error where it
// cannot work, and local_rank() reading the launcher's environment.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/comm.h"
#include "core/cuda_env.h"
#include "core/error.h"
#include "core/mpi_env.h"

#if LONGCTX_HAVE_CUDA
#include "tests/device_vec.h"
#endif

namespace longctx {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(NcclComm, MakeThrowsAClearErrorWhereItCannotWork) {
  auto self = make_self_comm();
  // A device this process does not have: every machine has one, with or without a GPU.
  const std::string msg = error_of([&] { make_nccl_comm(*self, cuda_device_count()); });
#if LONGCTX_HAVE_CUDA
  if (cuda_device_count() == 0)
    EXPECT_NE(msg.find("no CUDA device"), std::string::npos) << msg;
  else
    EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
#else
  EXPECT_NE(msg.find("built without CUDA"), std::string::npos) << msg;
#endif
  EXPECT_FALSE(error_of([&] { make_nccl_comm(*self, -1); }).empty());
}

// Sets environment variables for one test and restores them after.
class ScopedEnv {
 public:
  ~ScopedEnv() {
    for (auto& [name, old] : saved_) {
      if (old)
        setenv(name.c_str(), old->c_str(), 1);
      else
        unsetenv(name.c_str());
    }
  }
  void set(const std::string& name, const char* value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value)
      setenv(name.c_str(), value, 1);
    else
      unsetenv(name.c_str());
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

TEST(LocalRank, ReadsTheLaunchersVariablesInOrder) {
  ScopedEnv env;
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", nullptr);
  env.set("SLURM_LOCALID", nullptr);
  env.set("MPI_LOCALRANKID", nullptr);
  EXPECT_EQ(local_rank(), 0) << "no launcher";
  env.set("MPI_LOCALRANKID", "5");
  EXPECT_EQ(local_rank(), 5);
  env.set("SLURM_LOCALID", "3");
  EXPECT_EQ(local_rank(), 3) << "Slurm's before MPICH's";
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  EXPECT_EQ(local_rank(), 1) << "Open MPI's first";
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "x1");
  const std::string msg = error_of([] { local_rank(); });
  EXPECT_NE(msg.find("OMPI_COMM_WORLD_LOCAL_RANK='x1'"), std::string::npos) << msg;
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "-2");
  EXPECT_FALSE(error_of([] { local_rank(); }).empty());
}

#if LONGCTX_HAVE_CUDA

using test::DeviceVec;

class NcclOneRank : public testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    comm_ = make_nccl_comm(*self_, 0);
  }
  std::unique_ptr<Comm> self_ = make_self_comm();
  std::unique_ptr<Comm> comm_;
};

// Every collective on device buffers against SelfComm on the same host values.
template <class T>
void expect_collectives_match(Comm& nccl, Comm& self) {
  const int64_t n = 7;
  std::vector<T> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = T(3 * i + 1);
  const std::vector<T> zeros(n, T(0));

  std::vector<T> want(x);
  DeviceVec<T> buf(x);
  self.all_reduce_sum(want.data(), n);
  nccl.all_reduce_sum(buf.get(), n);
  EXPECT_EQ(buf.host(), want) << "all_reduce";
  DeviceVec<T> started(x);
  nccl.all_reduce_sum_start(started.get(), n);
  nccl.wait_all();
  EXPECT_EQ(started.host(), want) << "all_reduce started, then waited for";

  using Op = void (Comm::*)(const T*, T*, int64_t);
  const std::pair<const char*, Op> ops[] = {{"reduce_scatter", &Comm::reduce_scatter_sum<T>},
                                            {"all_gather", &Comm::all_gather<T>},
                                            {"all_to_all", &Comm::all_to_all<T>}};
  for (const auto& [name, op] : ops) {
    std::vector<T> out(n);
    DeviceVec<T> s(x), r(zeros);
    (self.*op)(x.data(), out.data(), n);
    (nccl.*op)(s.get(), r.get(), n);
    EXPECT_EQ(r.host(), out) << name;
  }

  std::vector<T> out(n);
  DeviceVec<T> s(x), r(zeros);
  self.send_recv(x.data(), n, 0, out.data(), n, 0);
  nccl.send_recv(s.get(), n, 0, r.get(), n, 0);
  EXPECT_EQ(r.host(), out) << "send_recv";

  std::vector<T> b(x);
  DeviceVec<T> db(x);
  self.broadcast(b.data(), n, 0);
  nccl.broadcast(db.get(), n, 0);
  EXPECT_EQ(db.host(), b) << "broadcast";
  nccl.barrier();
}

TEST_F(NcclOneRank, CollectivesMatchSelfCommForEveryType) {
  EXPECT_EQ(comm_->backend(), "nccl");
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->size(), 1);
  expect_collectives_match<float>(*comm_, *self_);
  expect_collectives_match<double>(*comm_, *self_);
  expect_collectives_match<int32_t>(*comm_, *self_);
  expect_collectives_match<int64_t>(*comm_, *self_);
  expect_collectives_match<uint8_t>(*comm_, *self_);
}

TEST_F(NcclOneRank, CountsCallsAndBytes) {
  comm_->take_stats();
  DeviceVec<float> a(std::vector<float>(1000, 1.0f)), b(std::vector<float>(1000, 0.0f));
  comm_->all_reduce_sum(a.get(), 1000);
  comm_->all_reduce_sum(a.get(), 1000);
  comm_->send_recv(a.get(), 1000, 0, b.get(), 1000, 0);
  comm_->broadcast(a.get(), 250, 0);
  const auto s = comm_->take_stats();
  ASSERT_EQ(s.count("all_reduce"), 1u);
  EXPECT_EQ(s.at("all_reduce").calls, 2);
  EXPECT_EQ(s.at("all_reduce").bytes, 0) << "a ring on one rank sends nothing";
  EXPECT_EQ(s.at("send_recv").calls, 1);
  EXPECT_EQ(s.at("send_recv").bytes, 4000);
  EXPECT_EQ(s.at("broadcast").bytes, 1000) << "the root sends the buffer";
  EXPECT_GE(s.at("all_reduce").seconds, 0.0);
  EXPECT_TRUE(comm_->take_stats().empty());
}

TEST_F(NcclOneRank, SplitMakesAWorkingCommunicator) {
  auto sub = comm_->split(3, 0);
  EXPECT_EQ(sub->backend(), "nccl");
  EXPECT_EQ(sub->size(), 1);
  DeviceVec<int64_t> v(std::vector<int64_t>{5, 6});
  sub->all_reduce_sum(v.get(), 2);
  EXPECT_EQ(v.host(), (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(sub->stats().at("all_reduce").calls, 1);
  EXPECT_EQ(comm_->stats().count("all_reduce"), 0u) << "counters are per communicator";
}

TEST_F(NcclOneRank, BadArgumentsThrowNamingTheOperation) {
  DeviceVec<float> a(std::vector<float>(4, 1.0f)), b(std::vector<float>(4, 0.0f));
  std::string msg = error_of([&] { comm_->send_recv(a.get(), 4, 1, b.get(), 4, 0); });
  EXPECT_NE(msg.find("send_recv"), std::string::npos) << msg;
  msg = error_of([&] { comm_->broadcast(a.get(), 4, 2); });
  EXPECT_NE(msg.find("broadcast"), std::string::npos) << msg;
  msg = error_of([&] { comm_->split(-1, 0); });
  EXPECT_NE(msg.find("split"), std::string::npos) << msg;
  comm_->all_reduce_sum(a.get(), 4);  // still usable: nothing reached NCCL
  EXPECT_EQ(a.host(), std::vector<float>(4, 1.0f));
}

#else

TEST(NcclOneRank, Collectives) { GTEST_SKIP() << "built without CUDA (LONGCTX_CUDA off)"; }

#endif

}  // namespace
}  // namespace longctx
