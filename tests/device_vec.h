// For the GPU tests (CUDA build only): a device copy of a host vector, freed at scope end, and
// conversions between the element types and double for the references.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

namespace longctx::test {

inline void cuda_ok(cudaError_t rc) { ASSERT_EQ(rc, cudaSuccess) << cudaGetErrorString(rc); }

template <class T>
class DeviceVec {
 public:
  explicit DeviceVec(const std::vector<T>& h) : n_(h.size()) {
    cuda_ok(cudaMalloc(&p_, bytes()));
    cuda_ok(cudaMemcpy(p_, h.data(), bytes(), cudaMemcpyHostToDevice));
  }
  ~DeviceVec() { cudaFree(p_); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  T* get() { return p_; }
  std::vector<T> host() const {
    std::vector<T> h(n_);
    cuda_ok(cudaMemcpy(h.data(), p_, bytes(), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  size_t bytes() const { return n_ * sizeof(T); }
  size_t n_;
  T* p_ = nullptr;
};

template <class T>
T from_float(float x);
template <>
inline float from_float<float>(float x) {
  return x;
}
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
inline double to_double(float x) { return x; }
inline double to_double(__nv_bfloat16 x) { return double(__bfloat162float(x)); }

template <class T>
std::vector<double> as_double(const std::vector<T>& x) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = to_double(x[i]);
  return out;
}

}  // namespace longctx::test
