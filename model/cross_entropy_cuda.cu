// Softmax cross-entropy over rows of V logits (model/cross_entropy.cpp), one block per row,
// fp32 throughout: a max pass, then a sum-of-exp pass, both block reductions in a fixed order.
// A target outside [0, V) other than the ignore index gives NaN (loss, lse and gradient row)
// rather than reading outside the row.
#include <algorithm>
#include <cmath>

#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "model/cross_entropy.h"
#include "model/cuda_ops.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 1024;  // a multiple of 32; V is ~50k for GPT-2's vocabulary

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fffffff); }

// The target's branch is the same for the whole block (one row per block at a time), so the
// reductions' barriers are reached by every thread or by none.
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_kernel(float* losses, float* lse, const T* logits, const int32_t* targets,
                                 int64_t N, int64_t V) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const int32_t t = targets[r];
    if (t == kIgnoreIndex) {
      if (threadIdx.x == 0) losses[r] = lse[r] = 0.0f;
      continue;
    }
    const T* x = logits + r * V;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, to_float(x[j]));
    m = block_max(m);
    float s = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(to_float(x[j]) - m);
    const float l = m + logf(block_sum(s));
    if (threadIdx.x == 0) {
      const bool ok = t >= 0 && t < V;
      losses[r] = ok ? l - to_float(x[t]) : quiet_nan();
      lse[r] = ok ? l : quiet_nan();
    }
  }
}

// dlogits may be logits: each element is read and then written by the same thread.
template <class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_kernel(T* dlogits, const T* logits, const float* lse,
                                  const int32_t* targets, int64_t N, int64_t V, float scale) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const int32_t t = targets[r];
    const T* x = logits + r * V;
    T* d = dlogits + r * V;
    if (t == kIgnoreIndex || t < 0 || t >= V) {
      const T fill = from_float<T>(t == kIgnoreIndex ? 0.0f : quiet_nan());
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) d[j] = fill;
      continue;
    }
    const float l = lse[r];
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const float g = scale * expf(to_float(x[j]) - l);
      d[j] = from_float<T>(j == t ? g - scale : g);
    }
  }
}

}  // namespace

template <class T>
void cross_entropy_forward(float* losses, float* lse, const T* logits, const int32_t* targets,
                           int64_t N, int64_t V, cudaStream_t stream) {
  if (N <= 0 || V <= 0) return;
  cross_entropy_forward_kernel<T>
      <<<row_blocks(N), kThreads, 0, stream>>>(losses, lse, logits, targets, N, V);
  LONGCTX_CUDA_LAUNCHED("cross_entropy_forward_kernel");
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                            int64_t N, int64_t V, float scale, cudaStream_t stream) {
  if (N <= 0 || V <= 0) return;
  cross_entropy_backward_kernel<T>
      <<<row_blocks(N), kThreads, 0, stream>>>(dlogits, logits, lse, targets, N, V, scale);
  LONGCTX_CUDA_LAUNCHED("cross_entropy_backward_kernel");
}

#define LONGCTX_CE_CUDA(T)                                                                     \
  template void cross_entropy_forward<T>(float*, float*, const T*, const int32_t*, int64_t,    \
                                         int64_t, cudaStream_t);                               \
  template void cross_entropy_backward<T>(T*, const T*, const float*, const int32_t*, int64_t, \
                                          int64_t, float, cudaStream_t);
LONGCTX_CE_CUDA(float)
LONGCTX_CE_CUDA(bf16)

}  // namespace longctx::cuda
