// Per-thread tile storage and row reductions shared by the attention kernels. Results must
// not depend on where buffers happen to be allocated or on the thread count, so tiles are
// 64-byte aligned with padded rows, and reductions run in an order fixed by the length alone.
#pragma once
#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <new>

namespace longctx::attn {

// Row-major views: contiguous (Mat, CMat) and with a row stride (Tile).
template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Mat = Eigen::Map<RowMat<T>>;
template <class T>
using CMat = Eigen::Map<const RowMat<T>>;
template <class T>
using Tile = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

constexpr std::align_val_t kAlign{64};

// One thread's tile storage, 64-byte aligned with rows padded to 64 bytes. Eigen runs the
// unaligned head of a row in scalar code (scalar exp, scalar sums), so a fixed alignment is
// what keeps the results' bits independent of where the buffers happen to be allocated.
template <class T>
class TileBuf {
 public:
  TileBuf(int64_t rows, int64_t cols)
      : ld_((cols + kLanes - 1) / kLanes * kLanes),
        p_(static_cast<T*>(::operator new(sizeof(T) * rows * ld_, kAlign))) {}
  T* data() { return p_.get(); }
  Tile<T> view(int64_t rows, int64_t cols) {
    return Tile<T>(p_.get(), rows, cols, Eigen::OuterStride<>(ld_));
  }

 private:
  static constexpr int64_t kLanes = 64 / sizeof(T);
  struct Free {
    void operator()(T* p) const { ::operator delete(p, kAlign); }
  };
  int64_t ld_;
  std::unique_ptr<T, Free> p_;
};

// Σ x_j y_j in an order fixed by n alone: 16 lanes (one AVX-512 float vector, which GCC
// vectorizes), then the lanes in order; never by the address or the thread.
template <class T>
T dot(const T* x, const T* y, int64_t n) {
  constexpr int kL = 16;
  T lane[kL] = {};
  int64_t j = 0;
  for (; j + kL <= n; j += kL)
    for (int l = 0; l < kL; ++l) lane[l] += x[j + l] * y[j + l];
  T total = 0;
  for (; j < n; ++j) total += x[j] * y[j];
  for (int l = 0; l < kL; ++l) total += lane[l];
  return total;
}

template <class T>
T sum(const T* x, int64_t n) {
  constexpr int kL = 16;
  T lane[kL] = {};
  int64_t j = 0;
  for (; j + kL <= n; j += kL)
    for (int l = 0; l < kL; ++l) lane[l] += x[j + l];
  T total = 0;
  for (; j < n; ++j) total += x[j];
  for (int l = 0; l < kL; ++l) total += lane[l];
  return total;
}

}  // namespace longctx::attn
