// A device copy of a host vector for the GPU tests (CUDA build only); freed at scope end.
#pragma once
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

}  // namespace longctx::test
