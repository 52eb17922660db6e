// The tensor-core flash entry points (attention/flash_tc_cuda.h) on a GPU against the CPU engine
// in float64 (attention/flash.h) with the same MaskSet, as tests/test_flash_tc_emu.cpp does
// under emulation, plus longer sequences (1000, 2048) at D = 128. Inputs are bf16-representable
// and the reference sees exactly those values; outputs start as NaN so anything left unwritten
// fails; the deterministic backward runs twice and must give identical bits. Label `gpu`:
// skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/cuda_env.h"
#include "core/error.h"

#if LONGCTX_HAVE_CUDA_KERNELS
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "attention/bigbird.h"
#include "attention/block_mask.h"
#include "attention/flash.h"
#include "attention/flash_tc_cuda.h"
#include "attention/longformer.h"
#include "attention/mask_plan.h"
#include "attention/strided.h"
#include "tests/device_vec.h"
#include "tests/test_util.h"
#endif

namespace longctx {
namespace {

#if LONGCTX_HAVE_CUDA_KERNELS

using attn::AttnShape;
using attn::MaskSet;
using bf16 = __nv_bfloat16;
using test::DeviceVec;

// As tests/test_flash_tc_emu.cpp: exact bf16 inputs, P and dS rounded to bf16 before the second
// products and every output rounded once (2^-9 relative per element, independent signs), so
// the norm-wise error stays a few 1e-3; lse is fp32 throughout. Longer rows sum more rounded
// terms, but the errors average out in the normalised sums.
constexpr double kTolOut = 1e-2;
constexpr double kTolGrad = 2e-2;
constexpr double kTolLse = 1e-5;

struct Case {
  std::string name;
  AttnShape s;
  MaskSet masks;
};

AttnShape shape(int64_t B, int64_t H, int64_t Hkv, int64_t T, int64_t D) {
  AttnShape s;
  s.B = B;
  s.H = H;
  s.Hkv = Hkv;
  s.Tq = s.Tk = T;
  s.D = D;
  return s;
}

cuda::TcDims dims_of(const AttnShape& s) {
  cuda::TcDims d;
  d.B = s.B;
  d.H = s.H;
  d.Hkv = s.Hkv;
  d.Tq = s.Tq;
  d.Tk = s.Tk;
  d.D = s.D;
  return d;
}

struct Tensor {
  std::vector<bf16> h;
  std::vector<double> d;
};

Tensor rounded(const std::vector<double>& x) {
  Tensor t{std::vector<bf16>(x.size()), std::vector<double>(x.size())};
  for (size_t i = 0; i < x.size(); ++i) {
    t.h[i] = __float2bfloat16_rn(float(x[i]));
    t.d[i] = __bfloat162float(t.h[i]);
  }
  return t;
}

Tensor random_tensor(int64_t n, uint64_t seed) {
  const std::vector<double> x = test::randn<double>(n, seed);
  return rounded(x);
}

std::vector<bf16> nan_bf16(size_t n) {
  return std::vector<bf16>(n, __float2bfloat16_rn(std::numeric_limits<float>::quiet_NaN()));
}

void expect_lse_near(const std::vector<float>& ours, const std::vector<double>& ref) {
  std::vector<double> a, b;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isinf(ref[i])) {
      ASSERT_TRUE(std::isinf(ours[i]) && ours[i] < 0) << "lse[" << i << "] = " << ours[i];
    } else {
      a.push_back(ours[i]);
      b.push_back(ref[i]);
    }
  }
  EXPECT_LE(test::rel_err(a, b), kTolLse) << "lse";
}

bool same_bits(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

void check_case(const Case& c) {
  SCOPED_TRACE(c.name);
  const AttnShape& s = c.s;
  const cuda::TcDims d = dims_of(s);
  const int64_t nq = s.B * s.H * s.Tq * s.D, nk = s.B * s.Hkv * s.Tk * s.D;
  const Tensor q = random_tensor(nq, 21), k = random_tensor(nk, 22), v = random_tensor(nk, 23);
  const Tensor dout = random_tensor(nq, 24);
  const double scale = 1.0 / std::sqrt(double(s.D));
  const float nan = std::numeric_limits<float>::quiet_NaN();

  std::vector<double> ref_out(nq), ref_lse(s.B * s.H * s.Tq);
  attn::flash_forward<double>(s, c.masks, q.d.data(), k.d.data(), v.d.data(), ref_out.data(),
                              ref_lse.data(), scale);
  // Both backwards run against the reference's forward (out rounded to bf16 for the GPU).
  const Tensor out_in = rounded(ref_out);
  std::vector<double> ref_dq(nq), ref_dk(nk), ref_dv(nk);
  attn::flash_backward<double>(s, c.masks, q.d.data(), k.d.data(), v.d.data(), out_in.d.data(),
                               ref_lse.data(), dout.d.data(), ref_dq.data(), ref_dk.data(),
                               ref_dv.data(), scale);

  cuda::DeviceMaskPlan plan;
  plan.upload(attn::make_mask_plan(c.masks), nullptr);
  DeviceVec<bf16> dq_in(q.h), dk_in(k.h), dv_in(v.h), ddout(dout.h), dout_in(out_in.h);
  DeviceVec<bf16> out(nan_bf16(nq));
  DeviceVec<float> lse(std::vector<float>(ref_lse.size(), nan));
  DeviceVec<float> lse_in(std::vector<float>(ref_lse.begin(), ref_lse.end()));
  cuda::flash_tc_forward(d, plan, dq_in.get(), dk_in.get(), dv_in.get(), out.get(), lse.get(),
                         float(scale), nullptr);
  test::cuda_ok(cudaDeviceSynchronize());
  EXPECT_LE(test::rel_err(test::as_double(out.host()), ref_out), kTolOut) << "out";
  expect_lse_near(lse.host(), ref_lse);

  struct Grads {
    std::vector<bf16> dq, dk, dv;
  };
  auto backward = [&](bool deterministic) {
    DeviceVec<bf16> dq(nan_bf16(nq)), dk(nan_bf16(nk)), dv(nan_bf16(nk));
    DeviceVec<float> scratch(
        std::vector<float>(cuda::flash_tc_backward_scratch_floats(d, deterministic), nan));
    cuda::flash_tc_backward(d, plan, dq_in.get(), dk_in.get(), dv_in.get(), dout_in.get(),
                            lse_in.get(), ddout.get(), dq.get(), dk.get(), dv.get(), float(scale),
                            deterministic, scratch.get(), nullptr);
    test::cuda_ok(cudaDeviceSynchronize());
    return Grads{dq.host(), dk.host(), dv.host()};
  };
  for (bool deterministic : {true, false}) {
    SCOPED_TRACE(deterministic ? "deterministic" : "atomics");
    const Grads g = backward(deterministic);
    EXPECT_LE(test::rel_err(test::as_double(g.dq), ref_dq), kTolGrad) << "dq";
    EXPECT_LE(test::rel_err(test::as_double(g.dk), ref_dk), kTolGrad) << "dk";
    EXPECT_LE(test::rel_err(test::as_double(g.dv), ref_dv), kTolGrad) << "dv";
    if (deterministic) {
      const Grads again = backward(true);
      EXPECT_TRUE(same_bits(g.dq, again.dq)) << "dq differs between two runs";
      EXPECT_TRUE(same_bits(g.dk, again.dk)) << "dk differs between two runs";
      EXPECT_TRUE(same_bits(g.dv, again.dv)) << "dv differs between two runs";
    }
  }
}

MaskSet causal_or_full(const AttnShape& s, bool causal) {
  return MaskSet::shared(causal ? attn::causal_mask(s.Tq, 64) : attn::full_mask(s.Tq, s.Tk, 64));
}

#define SKIP_WITHOUT_DEVICE() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

TEST(CudaFlashTc, FullAndCausal) {
  SKIP_WITHOUT_DEVICE();
  struct Dims {
    int64_t B, H, Hkv, T, D;
  };
  const Dims dims[] = {{2, 2, 2, 70, 64},    {1, 4, 2, 130, 128},  {1, 3, 1, 130, 40},
                       {1, 2, 1, 100, 72},   {1, 1, 1, 70, 200},   {2, 4, 2, 1000, 128},
                       {1, 4, 1, 2048, 128}, {1, 2, 2, 1000, 256}, {1, 2, 2, 2048, 64}};
  for (const Dims& d : dims)
    for (bool causal : {true, false}) {
      const AttnShape s = shape(d.B, d.H, d.Hkv, d.T, d.D);
      check_case({str("B", d.B, " H", d.H, " Hkv", d.Hkv, " T", d.T, " D", d.D,
                      causal ? " causal" : " full"),
                  s, causal_or_full(s, causal)});
    }
}

TEST(CudaFlashTc, Longformer) {
  SKIP_WITHOUT_DEVICE();
  for (int64_t T : {150, 2048}) {
    const AttnShape s = shape(1, 2, 2, T, 128);
    for (bool causal : {true, false})
      check_case({str("longformer T", T, causal ? " causal" : ""), s,
                  attn::longformer_masks(s.Tq, 64, 100, {1, 3}, {0, 77}, causal)});
  }
}

TEST(CudaFlashTc, BigBirdPerHead) {
  SKIP_WITHOUT_DEVICE();
  for (bool causal : {true, false}) {
    const AttnShape s = shape(1, 4, 2, 1000, 128);
    check_case({causal ? "bigbird causal" : "bigbird", s,
                attn::bigbird_masks(s.Tq, 64, 1, 1, 2, causal, 7, 0, int(s.H), -1)});
  }
}

TEST(CudaFlashTc, StridedParts) {
  SKIP_WITHOUT_DEVICE();
  for (int64_t T : {150, 2048}) {
    const AttnShape s = shape(1, 2, 1, T, 128);
    for (bool causal : {true, false})
      check_case({str("strided T", T, causal ? " causal" : ""), s,
                  MaskSet::shared(attn::strided_mask(s.Tq, 64, attn::stride_auto(T), causal))});
  }
}

TEST(CudaFlashTc, DocumentsPerSample) {
  SKIP_WITHOUT_DEVICE();
  const AttnShape s = shape(2, 2, 2, 1000, 128);
  std::vector<attn::BlockMask> masks;
  for (int64_t b = 0; b < s.B; ++b) {
    auto doc = std::make_shared<std::vector<int32_t>>(s.Tq);
    for (int64_t i = 0; i < s.Tq; ++i) (*doc)[i] = int32_t(i / (b == 0 ? 150 : 370));
    masks.push_back(attn::restrict_to_documents(attn::causal_mask(s.Tq, 64), doc));
  }
  check_case({"documents", s, MaskSet::per_sample(std::move(masks))});
}

TEST(CudaFlashTc, RowsWithoutKeys) {
  SKIP_WITHOUT_DEVICE();
  const AttnShape s = shape(1, 2, 2, 70, 64);
  attn::ElementRule rule;
  rule.causal = true;
  rule.min_distance = 1;
  check_case({"no diagonal", s, MaskSet::shared(attn::mask_from_rule(s.Tq, 64, rule))});
}

// The shape checks come before any CUDA call, so this runs without a device too.
TEST(CudaFlashTc, RejectsUnsupportedHeadSize) {
  cuda::DeviceMaskPlan plan;
  cuda::TcDims d;
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
