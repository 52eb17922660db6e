// MLA's GPU kernels (model/mla_kernels.cuh), run under CPU emulation (core/kernel_emu.h), for
// T = float and bf16: RoPE on a slice of each row against the CPU's rope_apply_slice in double,
// key assembly and its gradient against plain loops in double. Inputs are T-representable and
// the references see exactly those values; outputs start as NaN so that an element left
// unwritten fails. Sizes are no multiple of the block, the RoPE slice has an odd number of pairs,
// and each kernel also runs on a grid narrower than its items (the grid-stride loop).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/kernel_emu.h"
#include "model/mla_kernels.cuh"
#include "model/rope.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using cuda::wo::Dim3;
using bf16 = __nv_bfloat16;
namespace mla = cuda::mla;

// Shapes: 2 samples × 3 heads × 37 tokens; heads of 24 dims, the last 10 of them RoPE (5 pairs).
constexpr int64_t kB = 2, kH = 3, kT = 37, kDn = 14, kR = 10, kD = kDn + kR, kMaxPos = 40;

double to_double(float x) { return x; }
double to_double(bf16 x) { return double(__bfloat162float(x)); }

template <class T>
T from_double(double x) {
  if constexpr (std::is_same_v<T, float>)
    return float(x);
  else
    return __float2bfloat16_rn(float(x));
}

template <class T>
std::vector<double> as_double(const std::vector<T>& x) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = to_double(x[i]);
  return out;
}

// Normal(0, 1) values rounded to T.
template <class T>
std::vector<T> random_values(int64_t n, uint64_t seed) {
  const std::vector<float> f = test::randn<float>(n, seed);
  std::vector<T> out;
  for (float x : f) out.push_back(from_double<T>(x));
  return out;
}

template <class T>
std::vector<T> nans(int64_t n) {
  return std::vector<T>(size_t(n), from_double<T>(std::numeric_limits<double>::quiet_NaN()));
}

// Relative error bounds, norm-wise. fp32: a few float roundings per element (rotations, sums of
// 3 terms), ~1e-7. bf16: one rounding to bf16 per output, at most 2^-9 ≈ 2e-3 relative, so 4e-3;
// a wrong index or sign gives O(1).
template <class T>
constexpr double tol() {
  return std::is_same_v<T, float> ? 1e-6 : 4e-3;
}

// Grids: the launchers' (one item per thread) and a narrow one of 2 blocks.
std::vector<int64_t> grids(int64_t n) { return {mla::blocks_for(n), 2}; }

template <class Args>
void run(void (*kernel)(Args), int64_t blocks, const Args& args) {
  cuda::emu::launch(kernel, Dim3{unsigned(blocks), 1, 1}, mla::kThreads, 0, args);
}

template <class T>
class MlaKernelsEmu : public ::testing::Test {};
using Types = ::testing::Types<float, bf16>;
struct TypeNames {
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, float> ? "f32" : "bf16";
  }
};
TYPED_TEST_SUITE(MlaKernelsEmu, Types, TypeNames);

// The query heads' rope slice ([B, H, T, D], offset Dn) and the shared key ([B·T, R], offset 0),
// forward and inverse; dims outside the slice keep their bits.
TYPED_TEST(MlaKernelsEmu, RopeSliceMatchesCpu) {
  using T = TypeParam;
  const RopeTable<float> table_f(kMaxPos, kR);
  const RopeTable<double> table_d(kMaxPos, kR);
  struct Case {
    const char* name;
    int64_t rows, D, offset;
  };
  for (const Case& c :
       {Case{"query heads", kB * kH * kT, kD, kDn}, Case{"shared key", kB * kT, kR, 0}})
    for (bool inverse : {false, true}) {
      const int64_t n = c.rows * (kR / 2);
      for (int64_t blocks : grids(n)) {
        SCOPED_TRACE(testing::Message()
                     << c.name << (inverse ? ", inverse" : "") << ", " << blocks << " blocks");
        const std::vector<T> x0 = random_values<T>(c.rows * c.D, 1);
        std::vector<T> x = x0;
        run(&mla::rope_slice_kernel<T>, blocks,
            mla::RopeSliceArgs<T>{x.data(), table_f.cos.data(), table_f.sin.data(), c.rows, kT, c.D,
                                  c.offset, kR / 2, blocks, inverse ? -1.0f : 1.0f});
        // Row r = (sample·heads)·T + t: the CPU op on rows/T "samples" of T tokens, one head each.
        std::vector<double> ref = as_double(x0);
        rope_apply_slice<double>(ref.data(), table_d, c.rows / kT, kT, 1, c.D, c.offset, 0,
                                 inverse);
        EXPECT_LE(test::rel_err(as_double(x), ref), tol<T>());
        int64_t changed_outside = 0;
        for (int64_t r = 0; r < c.rows; ++r)
          for (int64_t d = 0; d < c.offset; ++d)
            changed_outside += to_double(x[r * c.D + d]) != to_double(x0[r * c.D + d]);
        EXPECT_EQ(changed_outside, 0);
      }
    }
}

TYPED_TEST(MlaKernelsEmu, AssembleKeysCopiesContentAndSharedKey) {
  using T = TypeParam;
  const std::vector<T> nope = random_values<T>(kB * kT * kH * kDn, 2),
                       rope_key = random_values<T>(kB * kT * kR, 3);
  std::vector<double> ref(size_t(kB * kH * kT * kD));
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t h = 0; h < kH; ++h)
      for (int64_t t = 0; t < kT; ++t)
        for (int64_t d = 0; d < kD; ++d)
          ref[size_t(((b * kH + h) * kT + t) * kD + d)] =
              d < kDn ? to_double(nope[size_t(((b * kT + t) * kH + h) * kDn + d)])
                      : to_double(rope_key[size_t((b * kT + t) * kR + d - kDn)]);
  for (int64_t blocks : grids(int64_t(ref.size()))) {
    SCOPED_TRACE(testing::Message() << blocks << " blocks");
    std::vector<T> k = nans<T>(int64_t(ref.size()));
    run(&mla::assemble_keys_kernel<T>, blocks,
        mla::AssembleArgs<T>{k.data(), nope.data(), rope_key.data(), kB, kT, kH, kDn, kR, blocks});
    EXPECT_EQ(as_double(k), ref);  // copies: exact
  }
}

// dnope: each head's content slice of dk (exact); drope_key: the sum over heads of the rope
// slices, in double for the reference.
TYPED_TEST(MlaKernelsEmu, SplitKeyGradsSumsTheSharedKeyOverHeads) {
  using T = TypeParam;
  const std::vector<T> dk = random_values<T>(kB * kH * kT * kD, 4);
  std::vector<double> dnope(size_t(kB * kT * kH * kDn)), drope(size_t(kB * kT * kR), 0.0);
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t h = 0; h < kH; ++h)
      for (int64_t t = 0; t < kT; ++t)
        for (int64_t d = 0; d < kD; ++d) {
          const double g = to_double(dk[size_t(((b * kH + h) * kT + t) * kD + d)]);
          if (d < kDn)
            dnope[size_t(((b * kT + t) * kH + h) * kDn + d)] = g;
          else
            drope[size_t((b * kT + t) * kR + d - kDn)] += g;
        }
  const int64_t n = kB * kT * (kH * kDn + kR);
  for (int64_t blocks : grids(n)) {
    SCOPED_TRACE(testing::Message() << blocks << " blocks");
    std::vector<T> got_nope = nans<T>(int64_t(dnope.size())),
                   got_rope = nans<T>(int64_t(drope.size()));
    run(&mla::split_key_grads_kernel<T>, blocks,
        mla::SplitArgs<T>{got_nope.data(), got_rope.data(), dk.data(), kB, kT, kH, kDn, kR,
                          blocks});
    EXPECT_EQ(as_double(got_nope), dnope);
    EXPECT_LE(test::rel_err(as_double(got_rope), drope), tol<T>());
  }
}

}  // namespace
}  // namespace longctx
