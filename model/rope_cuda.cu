// RoPE on x [BH, Tn, D] in place (model/rope.cpp's rotate-half form): one thread per pair
// (i, i + D/2) of a row, so every element is read and written by one thread only.
#include <algorithm>

#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "model/cuda_ops.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;

// cos, sin: [max_pos, half]; row r of x sits at position r % Tn. sign −1 applies the
// transpose (inverse rotation).
template <class T>
__global__ void rope_kernel(T* x, const float* cos, const float* sin, int64_t rows, int64_t Tn,
                            int64_t D, float sign) {
  const int64_t half = D / 2, n = rows * half;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = k / half, i = k % half, p = row % Tn;
    const float c = cos[p * half + i], s = sin[p * half + i];
    T* a = x + row * D + i;
    T* b = a + half;
    const float x0 = to_float(*a), x1 = to_float(*b);
    *a = from_float<T>(x0 * c - sign * x1 * s);
    *b = from_float<T>(x1 * c + sign * x0 * s);
  }
}

}  // namespace

template <class T>
void rope_apply(T* x, const float* cos, const float* sin, int64_t BH, int64_t Tn, int64_t D,
                bool inverse, cudaStream_t stream) {
  const int64_t n = BH * Tn * (D / 2);
  if (BH <= 0 || Tn <= 0 || D / 2 <= 0) return;
  const unsigned blocks =
      unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
  rope_kernel<T>
      <<<blocks, kThreads, 0, stream>>>(x, cos, sin, BH * Tn, Tn, D, inverse ? -1.0f : 1.0f);
  LONGCTX_CUDA_LAUNCHED("rope_kernel");
}

template void rope_apply<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                                cudaStream_t);
template void rope_apply<bf16>(bf16*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                               cudaStream_t);

}  // namespace longctx::cuda
