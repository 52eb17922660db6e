// Device memory owned by one object (CUDA build only): the GPU model's flat parameter, gradient
// and moment buffers and its activation arena are DeviceBuffers, freed at scope end.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "core/cuda_check.h"

namespace longctx::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t n) { resize(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  // Frees the old memory and allocates n elements (contents undefined).
  void resize(int64_t n) {
    release();
    if (n > 0)
      LONGCTX_CUDA_CHECK(str("allocating ", n * int64_t(sizeof(T)) / 1048576.0, " MiB on the GPU"),
                         cudaMalloc(reinterpret_cast<void**>(&p_), size_t(n) * sizeof(T)));
    n_ = n;
  }
  // Copies and fills run on `stream` (the caller's compute stream, so that they are ordered
  // with its kernels; the legacy default stream is not ordered with non-blocking streams) and
  // return when done.
  void zero(cudaStream_t stream) {
    if (n_ > 0)
      LONGCTX_CUDA_CHECK("zeroing device memory", cudaMemsetAsync(p_, 0, bytes(), stream));
  }
  void upload(const T* host, int64_t n, cudaStream_t stream, int64_t offset = 0) {
    LONGCTX_CHECK(offset + n <= n_, "upload of ", n, " elements at ", offset, " into ", n_);
    LONGCTX_CUDA_CHECK(
        "copying to the GPU",
        cudaMemcpyAsync(p_ + offset, host, size_t(n) * sizeof(T), cudaMemcpyHostToDevice, stream));
    LONGCTX_CUDA_CHECK("copying to the GPU", cudaStreamSynchronize(stream));
  }
  void download(T* host, int64_t n, cudaStream_t stream, int64_t offset = 0) const {
    LONGCTX_CHECK(offset + n <= n_, "download of ", n, " elements at ", offset, " from ", n_);
    LONGCTX_CUDA_CHECK(
        "copying from the GPU",
        cudaMemcpyAsync(host, p_ + offset, size_t(n) * sizeof(T), cudaMemcpyDeviceToHost, stream));
    LONGCTX_CUDA_CHECK("copying from the GPU", cudaStreamSynchronize(stream));
  }
  T* get() const { return p_; }
  int64_t size() const { return n_; }
  size_t bytes() const { return size_t(n_) * sizeof(T); }

 private:
  void release() {
    if (p_) (void)cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace longctx::cuda
