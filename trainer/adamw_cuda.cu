// AdamW over fp32 master weights and moments (trainer/adamw.cpp's float path), and Σ g² in
// double with a partition fixed by n alone, so the gradient norm has the same bits every run.
#include <algorithm>

#include "core/cuda_check.h"
#include "trainer/adamw_cuda.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
// sum_squares: kPartials blocks of kThreads threads, thread i summing g[i + k·stride]; the
// fixed grid (not the device's SM count) makes the partition depend on n only.
constexpr int kPartials = 1024;

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, bf16* copy, int64_t n,
                             float lr_c1, float ic2, float beta1, float beta2, float eps,
                             float decay, float grad_scale) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    const float wi = w[i] - (lr_c1 * mi / (sqrtf(vi * ic2) + eps) + decay * w[i]);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
    if (copy) copy[i] = __float2bfloat16(wi);
  }
}

// partial[block] = Σ over the block's threads' strided elements, a shared-memory tree in a
// fixed order.
__global__ void __launch_bounds__(kThreads)
    sum_squares_partial_kernel(const float* g, int64_t n, double* partial) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double x = g[i];
    acc += x * x;
  }
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

// *out = Σ partial[0, kPartials): one block, the same tree.
__global__ void __launch_bounds__(kThreads)
    sum_squares_final_kernel(const double* partial, double* out) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (int i = threadIdx.x; i < kPartials; i += kThreads) acc += partial[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = s[0];
}

}  // namespace

void adamw_update(float* w, const float* g, float* m, float* v, bf16* copy, int64_t n, float lr_c1,
                  float ic2, float beta1, float beta2, float eps, float decay, float grad_scale,
                  cudaStream_t stream) {
  if (n <= 0) return;
  const unsigned blocks =
      unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
  adamw_kernel<<<blocks, kThreads, 0, stream>>>(w, g, m, v, copy, n, lr_c1, ic2, beta1, beta2, eps,
                                                decay, grad_scale);
  LONGCTX_CUDA_LAUNCHED("adamw_kernel");
}

void sum_squares(const float* g, int64_t n, double* out, double* partial, cudaStream_t stream) {
  if (n <= 0) {
    LONGCTX_CUDA_CHECK("sum_squares of nothing", cudaMemsetAsync(out, 0, sizeof(double), stream));
    return;
  }
  sum_squares_partial_kernel<<<kPartials, kThreads, 0, stream>>>(g, n, partial);
  LONGCTX_CUDA_LAUNCHED("sum_squares_partial_kernel");
  sum_squares_final_kernel<<<1, kThreads, 0, stream>>>(partial, out);
  LONGCTX_CUDA_LAUNCHED("sum_squares_final_kernel");
}

int64_t sum_squares_scratch() { return kPartials; }

}  // namespace longctx::cuda
