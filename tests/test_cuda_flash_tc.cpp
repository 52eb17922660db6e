// The tensor-core flash entry points (attention/flash_tc_cuda.h) on a GPU against the CPU engine
// in float64 with the same MaskSet (tests/flash_tc_cases.h), as tests/test_flash_tc_emu.cpp does
// under emulation, plus longer sequences (1000, 2048) at D = 128. The deterministic backward
// runs twice and must give identical bits. Label `gpu`: skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/cuda_env.h"
#include "core/error.h"

#if LONGCTX_HAVE_CUDA_KERNELS
#include <cuda_runtime.h>

#include "attention/flash_tc_cuda.h"
#include "attention/mask_plan.h"
#include "tests/device_vec.h"
#include "tests/flash_tc_cases.h"
#endif

namespace longctx {
namespace {

#if LONGCTX_HAVE_CUDA_KERNELS

using namespace test::flash_tc;
using test::DeviceVec;

// As tests/test_flash_tc_emu.cpp: exact bf16 inputs, P and dS rounded to bf16 before the second
// products and every output rounded once (2^-9 relative per element, independent signs), so
// the norm-wise error stays a few 1e-3; lse is fp32 throughout. Longer rows sum more rounded
// terms, but the errors average out in the normalised sums.
constexpr Tolerances kTol{1e-2, 2e-2, 1e-5};
constexpr uint64_t kSeed = 21;
constexpr Runs kAllWithRepeat{true, true};

// The GPU entry points on device copies of the inputs.
class GpuRunner {
 public:
  GpuRunner(const Case& c, const Problem& p)
      : d_(c.s),
        p_(p),
        q_(p.q.h),
        k_(p.k.h),
        v_(p.v.h),
        dout_(p.dout.h),
        out_in_(p.out_in.h),
        lse_in_(p.lse_in) {
    plan_.upload(attn::make_mask_plan(c.masks), nullptr);
  }

  Forward forward() {
    DeviceVec<bf16> out(nan_bf16(p_.nq));
    DeviceVec<float> lse(nan_floats(int64_t(p_.ref_lse.size())));
    cuda::flash_tc_forward(d_, plan_, q_.get(), k_.get(), v_.get(), out.get(), lse.get(),
                           float(p_.scale), nullptr);
    test::cuda_ok(cudaDeviceSynchronize());
    return {out.host(), lse.host()};
  }

  Grads backward(bool deterministic) {
    DeviceVec<bf16> dq(nan_bf16(p_.nq)), dk(nan_bf16(p_.nk)), dv(nan_bf16(p_.nk));
    DeviceVec<float> scratch(nan_floats(cuda::flash_tc_backward_scratch_floats(d_, deterministic)));
    cuda::flash_tc_backward(d_, plan_, q_.get(), k_.get(), v_.get(), out_in_.get(), lse_in_.get(),
                            dout_.get(), dq.get(), dk.get(), dv.get(), float(p_.scale),
                            deterministic, scratch.get(), nullptr);
    test::cuda_ok(cudaDeviceSynchronize());
    return {dq.host(), dk.host(), dv.host()};
  }

 private:
  AttnShape d_;
  const Problem& p_;
  cuda::DeviceMaskPlan plan_;
  DeviceVec<bf16> q_, k_, v_, dout_, out_in_;
  DeviceVec<float> lse_in_;
};

void check(const Case& c) { check_case<GpuRunner>(c, kSeed, kTol, kAllWithRepeat); }

#define SKIP_WITHOUT_DEVICE() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

TEST(CudaFlashTc, FullAndCausal) {
  SKIP_WITHOUT_DEVICE();
  const AttnShape shapes[] = {
      shape(2, 2, 2, 70, 64),    shape(1, 4, 2, 130, 128),  shape(1, 3, 1, 130, 40),
      shape(1, 2, 1, 100, 72),   shape(1, 1, 1, 70, 200),   shape(2, 4, 2, 1000, 128),
      shape(1, 4, 1, 2048, 128), shape(1, 2, 2, 1000, 256), shape(1, 2, 2, 2048, 64)};
  for (const AttnShape& s : shapes)
    for (bool causal : {true, false}) check(dense_case(s, causal));
}

TEST(CudaFlashTc, Longformer) {
  SKIP_WITHOUT_DEVICE();
  for (int64_t T : {150, 2048})
    for (bool causal : {true, false}) check(longformer_case(shape(1, 2, 2, T, 128), 100, causal));
}

TEST(CudaFlashTc, BigBirdPerHead) {
  SKIP_WITHOUT_DEVICE();
  for (bool causal : {true, false}) check(bigbird_case(shape(1, 4, 2, 1000, 128), 2, causal));
}

TEST(CudaFlashTc, StridedParts) {
  SKIP_WITHOUT_DEVICE();
  for (int64_t T : {150, 2048})
    for (bool causal : {true, false})
      check(strided_case(shape(1, 2, 1, T, 128), attn::stride_auto(T), causal));
}

TEST(CudaFlashTc, DocumentsPerSample) {
  SKIP_WITHOUT_DEVICE();
  check(documents_case(shape(2, 2, 2, 1000, 128), {150, 370}));
}

TEST(CudaFlashTc, RowsWithoutKeys) {
  SKIP_WITHOUT_DEVICE();
  check(no_diagonal_case(shape(1, 2, 2, 70, 64)));
}

// The shape checks come before any CUDA call, so this runs without a device too.
TEST(CudaFlashTc, RejectsUnsupportedHeadSize) {
  cuda::DeviceMaskPlan plan;
  AttnShape d;
  d.D = 36;
  try {
    cuda::flash_tc_forward(d, plan, nullptr, nullptr, nullptr, nullptr, nullptr, 1.0f, nullptr);
    ADD_FAILURE() << "D = 36 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head size 36"), std::string::npos) << e.what();
  }
}

#else

TEST(CudaFlashTc, Skipped) { GTEST_SKIP() << "built without CUDA kernels"; }

#endif

}  // namespace
}  // namespace longctx
